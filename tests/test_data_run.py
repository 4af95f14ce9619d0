"""``demoai data run STEPS.yaml``: every data verb as a step, each committed, the whole file
checked before the first step runs."""
from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from tests.helpers.datarepo import committed_dataset, head_commit


def _rows(n: int) -> list[dict]:
    return [{"id": i, "text": f"row {i} talks about subject {i} in {i % 5} distinct ways today",
             "label": "ab"[i % 2]} for i in range(n)]


_setup = committed_dataset

_head = head_commit


def _ids(tmp_dir, name: str) -> list:
    return [json.loads(x)["id"] for x in (tmp_dir / name).read_text().splitlines()]


def test_four_step_file_end_to_end(tmp_dir, cli) -> None:
    rows = _rows(12)
    rows[2]["text"] = "  mail me at ann@example.org   " + rows[2]["text"]
    rows[7]["text"] = rows[6]["text"]
    _setup(tmp_dir, cli, rows)
    tmp_dir.gen({"steps.yaml": (
        "steps:\n"
        "  - clean: {path: train.jsonl, column: text, rules: [whitespace, pii, 'length:min=5']}\n"
        "  - dedup: {path: train.jsonl, column: text, threshold: 0.8}\n"
        "  - augment: {path: train.jsonl, column: text, templates: ['Q: {text}'], seed: 1}\n"
        "  - stats: {path: train.augmented.jsonl, column: text, diversity: false, language: false}\n")})
    out = json.loads(cli("data", "run", "steps.yaml", "--json").stdout)
    assert [r["verb"] for r in out] == ["clean", "dedup", "augment", "stats"]
    assert all(r["commit"] for r in out)
    log = json.loads(cli("log", "--json").stdout)
    assert len(log) == 5                              # import + one commit per step
    assert [r["rows_out"] for r in out[:3]] == [12, 11, 11]
    text = {json.loads(x)["id"]: json.loads(x)["text"]
            for x in (tmp_dir / "train.jsonl").read_text().splitlines()}
    assert 7 not in text and text[2].startswith("mail me at [EMAIL] row 2")
    aug = [json.loads(x) for x in (tmp_dir / "train.augmented.jsonl").read_text()
           .splitlines()]
    assert len(aug) == 11 and all(a["text"].startswith("Q: ") for a in aug)
    st = out[3]["summary"]["stats"]
    assert st["rows"] == 11 and out[3]["outputs"] == [
        "train.augmented.jsonl.prep/stats.parquet"]
    stored = pq.read_table(tmp_dir / "train.augmented.jsonl.prep/stats.parquet")
    assert dict(zip(stored.column("statistic").to_pylist(),
                    stored.column("value").to_pylist()))["rows"] == 11
    why = json.loads(cli("data", "why", "train.jsonl", "7", "--json").stdout)["entries"]
    assert why[0]["verb"] == "dedup" and why[0]["duplicate_of"] == "6"
    # run again: every step finds its work done, nothing is committed
    head = _head(tmp_dir)
    again = json.loads(cli("data", "run", "steps.yaml", "--json").stdout)
    assert all(r["up_to_date"] for r in again) and _head(tmp_dir) == head
    text = cli("data", "run", "steps.yaml").stdout
    assert "step 4: data stats train.augmented.jsonl: 11 rows (stored report reused" in text


def test_split_contamination_and_self_instruct_steps(tmp_dir, cli, monkeypatch) -> None:
    rows = _rows(20)
    for k in range(1, 8):                 # copies of row 0 land in both splits
        rows[k]["text"] = rows[0]["text"]
    _setup(tmp_dir, cli, rows)
    tmp_dir.gen({"seeds.jsonl": [{"id": i, "instruction": q} for i, q in enumerate(
        ["Name three primary colors.", "Give a synonym for the word happy.",
         "What is the capital city of France?"])]})
    cli("add", "seeds.jsonl", "--key", "id")
    cli("commit", "-m", "seeds")
    from demoai.porcelain.data import generate
    replies = iter(['{"instruction": "Describe how rainbows form after a storm.", '
                    '"answer": "Sunlight refracts in raindrops."}'] * 4)

    def caller(repo, model, *, rev="HEAD", replay_from=None):
        def call(messages, params, schema):
            text = next(replies)
            return {"text": text, "json": json.loads(text), "finish_reason": "stop",
                    "record": {"backend": "script"}}
        return call, {"ref": model, "digest": "blake3:script"}, lambda: None
    monkeypatch.setattr(generate, "model_caller", caller)
    tmp_dir.gen({"steps.yaml": (
        "- split: {path: train.jsonl, ratios: [0.75, 0.25], names: [train, test], key: id}\n"
        "- contamination: {path: train.test.jsonl, against: train.train.jsonl, remove: true,"
        " column: text}\n"
        "- self_instruct: {path: seeds.jsonl, out: gen.jsonl, n: 1, seed: 2}\n")})
    out = json.loads(cli("data", "run", "steps.yaml", "--json").stdout)
    assert [r["verb"] for r in out] == ["split", "contamination", "self-instruct"]
    assert all(r["commit"] for r in out)
    train, test = _ids(tmp_dir, "train.train.jsonl"), _ids(tmp_dir, "train.test.jsonl")
    assert len(train) + out[1]["rows_in"] == 20 and len(test) == out[1]["rows_out"]
    copies = set(range(8))
    assert copies & set(train) and not copies & set(test)     # the copies left the test split
    assert out[1]["rows_in"] - out[1]["rows_out"] == out[1]["summary"]["contaminated"] > 0
    gen = [json.loads(x) for x in (tmp_dir / "gen.jsonl").read_text().splitlines()]
    assert [g["instruction"] for g in gen] == ["Describe how rainbows form after a storm."]
    assert len(json.loads(cli("log", "--json").stdout)) == 5


@pytest.mark.parametrize("steps, needle, code", [
    ("- dedupe: {path: train.jsonl}\n", "did you mean 'dedup'", "invalid_artifact"),
    ("- clean: {path: train.jsonl, rulez: [pii]}\n", "did you mean 'rules'", "invalid_artifact"),
    ("- label: {path: train.jsonl}\n", "interactive", "invalid_artifact"),
    ("- clean: {path: train.jsonl, rules: [pij]}\n", "did you mean 'pii'", "invalid_artifact"),
    ("- dedup: {path: train.jsonl, column: txt}\n", "did you mean 'text'", "invalid_artifact"),
    ("- split: {path: train.jsonl, ratios: [0.8, 0.3]}\n", "summing to 1", "invalid_artifact"),
    ("- augment: {path: train.jsonl, column: text}\n", "templates or model", "invalid_artifact"),
    ("- stats: {path: nope.jsonl}\n", "no earlier step writes it", "path_not_found"),
    ("- contamination: {path: train.jsonl, against: [nothing]}\n", "nor a ref",
     "path_not_found"),
])
def test_bad_step_files_are_refused_before_any_step_runs(tmp_dir, cli, steps, needle,
                                                          code) -> None:
    _setup(tmp_dir, cli, _rows(6))
    # a good first step, so a file checked step by step would have committed it
    good = "- clean: {path: train.jsonl, column: text, rules: [pii, 'length:min=50']}\n"
    tmp_dir.gen({"steps.yaml": good + steps})
    head, before = _head(tmp_dir), (tmp_dir / "train.jsonl").read_bytes()
    err = json.loads(cli("data", "run", "steps.yaml", "--json", code=1).stderr)["error"]
    assert err["code"] == code and needle in err["message"] and "step 2" in err["message"], err
    assert _head(tmp_dir) == head and (tmp_dir / "train.jsonl").read_bytes() == before


def test_a_step_may_read_what_an_earlier_step_writes(tmp_dir, cli) -> None:
    _setup(tmp_dir, cli, _rows(8))
    tmp_dir.gen({"steps.yaml": (
        "- split: {path: train.jsonl, ratios: '0.5,0.5', names: 'a,b'}\n"
        "- stats: {path: train.b.jsonl, column: text, diversity: false, language: false}\n"
        "- stats: {path: train.c.jsonl}\n")})
    err = json.loads(cli("data", "run", "steps.yaml", "--json", code=1).stderr)["error"]
    assert "step 3" in err["message"] and "train.c.jsonl" in err["message"]
    tmp_dir.gen({"steps.yaml": (
        "- split: {path: train.jsonl, ratios: '0.5,0.5', names: 'a,b'}\n"
        "- stats: {path: train.b.jsonl, column: text, diversity: false, language: false}\n")})
    out = json.loads(cli("data", "run", "steps.yaml", "--json").stdout)
    assert out[1]["summary"]["stats"]["rows"] == len(_ids(tmp_dir, "train.b.jsonl"))

"""``demoai data self-instruct / augment / label / search`` on real temp repositories."""
from __future__ import annotations

import json
import random

import pyarrow.parquet as pq

from demoai.porcelain import data as D
from demoai.porcelain import open_repository
from tests.helpers.datarepo import head_commit

SEEDS = [("Name three primary colors.", "Red, blue and yellow."),
         ("Translate 'good morning' into Spanish.", "Buenos dias."),
         ("Give a synonym for the word happy.", "Joyful."),
         ("What is the capital city of France?", "Paris."),
         ("Sort these numbers in ascending order: 5, 2, 9.", "2, 5, 9.")]


def _seeds(tmp_dir, cli) -> None:
    cli("init")
    tmp_dir.gen({"seeds.jsonl": [{"id": i, "instruction": q, "answer": a}
                                 for i, (q, a) in enumerate(SEEDS)]})
    cli("add", "seeds.jsonl", "--key", "id")
    cli("commit", "-m", "seeds")


_head = head_commit


def _scripted(monkeypatch, replies: list[str]) -> list[dict]:
    """Replace the model with one that answers ``replies`` in turn; returns the calls."""
    from demoai.porcelain.data import generate
    seen: list[dict] = []
    real = generate.model_caller

    def caller(repo, model, *, rev="HEAD", replay_from=None):
        if replay_from is not None:
            return real(repo, model, rev=rev, replay_from=replay_from)

        def call(messages, params, schema):
            seen.append({"messages": messages, "params": params})
            text = replies[len(seen) - 1]
            return {"text": text, "json": None, "finish_reason": "stop",
                    "record": {"backend": "script"}}
        return call, {"ref": model, "digest": "blake3:script"}, lambda: None
    monkeypatch.setattr(generate, "model_caller", caller)
    return seen


def test_self_instruct_with_smollm2_records_calls_and_replays(tmp_dir, cli) -> None:
    _seeds(tmp_dir, cli)
    res = json.loads(cli("data", "self-instruct", "seeds.jsonl", "--out", "gen.jsonl", "--n",
                         "2", "--seed", "3", "--max-tokens", "48", "--json").stdout)
    assert res["calls"] == 2 and res["kept"] + res["rejected"] == 2 and res["commit"]
    calls = pq.read_table(tmp_dir / "gen.jsonl.prep/calls.parquet").to_pylist()
    assert [c["call"] for c in calls] == [0, 1]
    for c in calls:
        p = json.loads(c["params"])
        assert p["seed"] == c["seed"] and p["max_tokens"] == 48
        assert "Task 1:" in json.loads(c["messages"])[1]["content"]
        assert json.loads(c["record"])["model_digest"]
    rej = pq.read_table(tmp_dir / "gen.jsonl.prep/rejected.parquet").to_pylist()
    assert len(rej) == res["rejected"]
    assert all(r["reason"] in {"invalid_output", "too_short", "too_long", "blocklist",
                               "bad_start", "similar"} for r in rej)
    again = json.loads(cli("data", "self-instruct", "seeds.jsonl", "--out", "gen.jsonl",
                           "--n", "2", "--seed", "3", "--max-tokens", "48", "--json").stdout)
    assert again["up_to_date"] and again["commit"] is None
    head = _head(tmp_dir)
    replay = json.loads(cli("data", "self-instruct", "seeds.jsonl", "--out", "gen.jsonl",
                            "--n", "2", "--seed", "3", "--max-tokens", "48", "--replay",
                            "--json").stdout)
    assert (replay["kept"], replay["rejected"]) == (res["kept"], res["rejected"])
    assert replay["commit"] is None and _head(tmp_dir) == head       # same rows, same calls
    cli("data", "self-instruct", "seeds.jsonl", "--out", "gen.jsonl", "--n", "3", "--seed",
        "3", "--max-tokens", "48", "--replay", code=1)                # call 3 never recorded


def test_self_instruct_filters_with_reasons(tmp_dir, cli, monkeypatch) -> None:
    _seeds(tmp_dir, cli)
    ok = {"instruction": "List four animals that live in the ocean.", "answer": "Shark, whale."}
    replies = [json.dumps(ok),
               json.dumps({"instruction": "Name the three primary colors.", "answer": "x"}),
               json.dumps({"instruction": "Describe the image below in detail.", "answer": "y"}),
               "Sure! Here is a task: ...",                               # garbage
               json.dumps({"instruction": "Hi.", "answer": "z"}),
               json.dumps({"instruction": "List four animals that live in the sea.",
                           "answer": "Cod."}),
               json.dumps({"instruction": "Explain why the sky looks blue at noon.",
                           "answer": "Rayleigh scattering."})]
    seen = _scripted(monkeypatch, replies)
    res = D.self_instruct(open_repository(tmp_dir), "seeds.jsonl", "gen.jsonl", n=7, seed=5)
    assert len(seen) == 7 and res.kept == 2
    assert [r["instruction"] for r in res.rows] == [ok["instruction"],
                                                    "Explain why the sky looks blue at noon."]
    by_call = {r["call"]: r for r in res.rejections}
    assert by_call[1]["reason"] == "similar" and by_call[1]["similar_to"] == SEEDS[0][0]
    assert by_call[2]["reason"] == "blocklist" and "image" in by_call[2]["detail"]
    assert by_call[3]["reason"] == "invalid_output"
    assert by_call[4]["reason"] == "too_short"
    assert by_call[5]["reason"] == "similar" and by_call[5]["similar_to"] == ok["instruction"]
    assert by_call[5]["similarity"] >= 0.7
    params = [s["params"] for s in seen]
    assert len({p["seed"] for p in params}) == 7                      # every call seeded
    rows = [json.loads(x) for x in (tmp_dir / "gen.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == ["s5-0", "s5-6"]
    # a second run adds to the pool: the kept rows of the first are not produced again
    _scripted(monkeypatch, [json.dumps(ok), json.dumps(
        {"instruction": "Write a haiku about autumn leaves.", "answer": "..."})])
    res2 = D.self_instruct(open_repository(tmp_dir), "seeds.jsonl", "gen.jsonl", n=2, seed=6)
    assert res2.kept == 1 and res2.rejections[0]["reason"] == "similar"
    assert len((tmp_dir / "gen.jsonl").read_text().splitlines()) == 3


def test_self_instruct_all_rejected_commits_nothing(tmp_dir, cli, monkeypatch) -> None:
    _seeds(tmp_dir, cli)
    _scripted(monkeypatch, ["garbage", "{not json"])
    head = _head(tmp_dir)
    err = json.loads(cli("data", "self-instruct", "seeds.jsonl", "--out", "gen.jsonl", "--n",
                         "2", "--json", code=1).stderr)
    assert err["error"]["code"] == "invalid_artifact" and "invalid_output 2" in \
        err["error"]["message"]
    assert _head(tmp_dir) == head and not (tmp_dir / "gen.jsonl").exists()
    err = json.loads(cli("data", "self-instruct", "seeds.jsonl", "--out", "gen.jsonl",
                         "--column", "nope", "--json", code=1).stderr)
    assert err["error"]["fields"]["column"] == "nope"
    cli("data", "self-instruct", "seeds.jsonl", "--out", "gen.txt", code=1)


def test_instruction_filter_matches_rouge_score_brute_force() -> None:
    from rouge_score import rouge_scorer

    from demoai.eval.metrics import rouge_tokenize
    from demoai.prep.selfinstruct import FilterConfig, InstructionFilter
    rng = random.Random(7)
    words = [f"w{i}" for i in range(300)]
    weights = [1 / (i + 1) for i in range(300)]                     # Zipf-like, as words are

    def text() -> str:
        return " ".join(rng.choices(words, weights, k=rng.randint(4, 14)))
    pool = [text() for _ in range(40)]
    cands = [text() for _ in range(30)]
    cands += [c + " w7" for c in cands[:10]] + [" ".join(p.split()[1:]) for p in pool[:10]]
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    kept_bf, pool_bf = [], list(pool)
    for c in cands:
        if max(scorer.score(c, p)["rougeL"].fmeasure for p in pool_bf) < 0.7:
            kept_bf.append(c)
            pool_bf.append(c)
    filt = InstructionFilter(rouge_tokenize, pool, FilterConfig(blocklist=()), corpus=cands)
    kept = [c for c in cands if filt.check(c).kept]
    assert kept == kept_bf and 0 < len(kept) < len(cands)
    assert filt.index.compared < len(cands) * len(pool) / 4           # not N x M


def test_augment_templates_and_model(tmp_dir, cli, monkeypatch) -> None:
    cli("init")
    tmp_dir.gen({"qa.jsonl": [{"id": i, "q": f"what is {i} plus {i}", "a": str(2 * i)}
                              for i in range(4)]})
    cli("add", "qa.jsonl", "--key", "id")
    cli("commit", "-m", "qa")
    res = json.loads(cli("data", "augment", "qa.jsonl", "-t", "Question: {q}", "-t",
                         "Please answer: {q}?", "-c", "q", "--per-row", "2", "--seed", "1",
                         "--json").stdout)
    assert res["made"] == 8 and res["commit"]
    rows = [json.loads(x) for x in (tmp_dir / "qa.augmented.jsonl").read_text().splitlines()]
    assert {r["q"] for r in rows if r["source_key"] == "0"} == {"Question: what is 0 plus 0",
                                                               "Please answer: what is 0 plus 0?"}
    assert all(r["a"] == str(2 * int(r["source_key"])) for r in rows)
    err = json.loads(cli("data", "augment", "qa.jsonl", "-t", "{nope}", "--out", "x.jsonl",
                         "--json", code=1).stderr)
    assert err["error"]["fields"]["column"] == "nope" and not (tmp_dir / "x.jsonl").exists()
    seen = _scripted(monkeypatch, ["What is zero added to zero?", "", "what is 2 plus 2",
                                   "Tell me the sum of three and three."])
    res = D.augment(open_repository(tmp_dir), "qa.jsonl", model="smollm2", column="q",
                    out="para.jsonl", seed=2)
    assert res.made == 2 and res.reasons == {"invalid_output": 1, "unchanged": 1}
    assert len({s["params"]["seed"] for s in seen}) == 4
    calls = pq.read_table(tmp_dir / "para.jsonl.prep/calls.parquet").to_pylist()
    assert [c["row"] for c in calls] == [0, 1, 2, 3] and calls[1]["output"] == ""
    replay = D.augment(open_repository(tmp_dir), "qa.jsonl", model="smollm2", column="q",
                       out="para.jsonl", seed=2, replay=True)
    assert replay.made == 2 and replay.commit is None                 # replayed: same rows


def test_label_loop_through_the_cli(tmp_dir, cli) -> None:
    from click.testing import CliRunner

    from demoai.cli import main
    cli("init")
    tmp_dir.gen({"r.jsonl": [{"id": i, "text": f"review {i}", "alt": f"other {i}"}
                             for i in range(4)]})
    cli("add", "r.jsonl", "--key", "id")
    cli("commit", "-m", "reviews")
    runner = CliRunner(env={"DEMOAI_AUTHOR": "Ann <ann@x.org>"})
    res = runner.invoke(main, ["data", "label", "r.jsonl", "-c", "text", "--labels",
                               "good,bad"], input="good\nmaybe\n2\ns\nq\n")
    assert res.exit_code == 0, res.output
    assert "answer one of good, bad" in res.output
    rows = [json.loads(x) for x in (tmp_dir / "r.labels.jsonl").read_text().splitlines()]
    assert [(r["key"], r["label"]) for r in rows] == [("0", "good"), ("1", "bad")]
    assert rows[0]["labeller"].startswith("Ann") and rows[0]["labelled_at"].endswith("+00:00")
    res = runner.invoke(main, ["data", "label", "r.jsonl", "-c", "text", "--labels",
                               "good,bad", "--json"], input="1\n1\n")
    out = json.loads(res.stdout)
    assert out["labels"] == {"2": "good", "3": "good"}               # 0 and 1 not asked again
    res = runner.invoke(main, ["data", "label", "r.jsonl", "-c", "text", "-c", "alt",
                               "--pairwise", "--out", "prefs.jsonl", "-n", "2"],
                        input="a\ntie\n")
    assert res.exit_code == 0, res.output
    prefs = [json.loads(x) for x in (tmp_dir / "prefs.jsonl").read_text().splitlines()]
    assert [p["label"] for p in prefs] == ["a", "tie"] and prefs[0]["columns"] == "text,alt"
    res = runner.invoke(main, ["data", "label", "r.jsonl", "-c", "nope", "--labels", "a,b"])
    assert res.exit_code == 1 and "nope" in res.output


def test_search_finds_by_meaning_and_rebuilds_on_change(tmp_dir, cli) -> None:
    cli("init")
    rows = [{"id": 0, "text": "The cat sat on the mat all day long."},
            {"id": 1, "text": "Stock markets fell sharply on Monday morning."},
            {"id": 2, "text": "How do I bake sourdough bread at home?"},
            {"id": 3, "text": "The football team won the championship final."}]
    tmp_dir.gen({"docs.jsonl": rows})
    cli("add", "docs.jsonl", "--key", "id")
    cli("commit", "-m", "docs")
    res = json.loads(cli("data", "search", "docs.jsonl", "baking a loaf of bread", "-k", "2",
                         "--json").stdout)
    assert res["built"] and [h["key"] for h in res["hits"]][0] == "2"
    assert len(res["hits"]) == 2 and res["hits"][0]["similarity"] > res["hits"][1]["similarity"]
    again = json.loads(cli("data", "search", "docs.jsonl", "share prices dropped",
                           "--json").stdout)
    assert not again["built"] and again["hits"][0]["key"] == "1" and len(again["hits"]) == 4
    assert list((tmp_dir / ".demoai/cache/search").iterdir())
    tmp_dir.gen({"docs.jsonl": rows + [{"id": 4, "text": "A recipe for rye bread loaves."}]})
    cli("commit", "docs.jsonl", "-m", "more")
    res = json.loads(cli("data", "search", "docs.jsonl", "baking a loaf of bread",
                         "--json").stdout)
    assert res["built"] and res["rows"] == 5 and {h["key"] for h in res["hits"][:2]} == {"2", "4"}
    err = json.loads(cli("data", "search", "docs.jsonl", " ", "--json", code=1).stderr)
    assert err["error"]["code"] == "invalid_artifact"

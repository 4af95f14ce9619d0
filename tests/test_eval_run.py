"""``eval run`` end to end on the embedded SmolLM2: committed results that pin their inputs,
the cache (reuse, re-scoring, resuming), the bad inputs refused before anything is committed,
comparisons, gates and ``eval test``."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from demoai import errors as E
from demoai.cli import main
from demoai.objects import EvalResult, GateRecord
from demoai.porcelain import add, commit
from demoai.porcelain import evaluate as PE

QA = [{"id": f"q{i}", "question": f"What is {a} + {b}?", "answer": str(a + b)}
      for i, (a, b) in enumerate([(1, 1), (2, 3), (4, 4), (10, 5), (7, 2)])]
SUITE = """name: arith
task: generate
dataset: data/arith.jsonl
key: id
template: "{{question}} Answer with the number only."
reference: answer
parameters: {temperature: 0, max_tokens: 6}
metrics: [exact_match, contains]
"""


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEMOAI_LLM_THREADS", "1")


@pytest.fixture
def qa_repo(repo, tmp_dir):
    tmp_dir.gen({"data/arith.jsonl": QA, "arith.suite.yaml": SUITE})
    add(repo, [tmp_dir / "data", tmp_dir / "arith.suite.yaml"])
    commit(repo, "data and suite")
    return repo


def _forbid_model(monkeypatch: pytest.MonkeyPatch) -> None:
    import demoai.eval.run as run_mod

    def refuse(*a, **k):
        raise AssertionError("the model was loaded")
    monkeypatch.setattr(run_mod, "open_model", refuse)


def test_a_run_commits_a_result_pinned_by_digest_with_per_example_predictions(qa_repo, tmp_dir):
    r = PE.run_eval(qa_repo, "arith.suite.yaml")
    res = r.outcome.result
    assert r.commit and not r.outcome.cached
    assert r.outcome.path == "evals/arith/smollm2.eval.json"
    stored = qa_repo.artifact_at("HEAD", r.outcome.path)
    assert isinstance(stored, EvalResult) and stored.digest == res.digest
    # every input pinned by digest, in the record and in the commit's lineage
    ds = qa_repo.artifact_at("HEAD", "data/arith.jsonl")
    suite = qa_repo.artifact_at("HEAD", "arith.suite.yaml")
    assert res.dataset == ds.digest and res.suite == suite.digest and res.model.startswith("blake3:")
    assert res.pins["chat_template"].startswith("blake3:") and res.pins["params"]["max_tokens"] == 6
    lineage = qa_repo.lineage(r.commit)
    assert lineage["inputs"]["dataset"] == ds.digest and lineage["inputs"]["model"] == res.model
    # scores with intervals; per-example rows with their scores
    for m in ("exact_match", "contains"):
        s = res.scores[m]
        assert s["n"] == 5 and s["ci"][0] <= s["value"] <= s["ci"][1]
    view = PE.show_eval(qa_repo, r.outcome.path, examples=10)
    assert [e["item"] for e in view.examples] == [q["id"] for q in QA]
    for e in view.examples:
        assert e["score:contains"] == float(json.loads(e["reference"])[0] in e["output"])
    assert res.perf["latency_ms"]["p50"] > 0 and res.perf["completion_tokens"] > 0
    # the real git reads the commit
    git = subprocess.run(["git", "--git-dir", str(tmp_dir / ".demoai" / "git"), "show", "--stat",
                          r.commit], capture_output=True, text=True)
    assert git.returncode == 0 and "evals/arith/smollm2.eval.json" in git.stdout


def test_an_unchanged_rerun_reuses_predictions_and_commits_nothing(qa_repo, monkeypatch):
    first = PE.run_eval(qa_repo, "arith.suite.yaml")
    _forbid_model(monkeypatch)
    again = PE.run_eval(qa_repo, "arith.suite.yaml")
    assert again.outcome.cached and again.up_to_date and again.commit is None
    assert again.outcome.result.digest == first.outcome.result.digest


def test_changing_only_the_metrics_rescores_without_the_model(qa_repo, tmp_dir, monkeypatch):
    PE.run_eval(qa_repo, "arith.suite.yaml")
    (tmp_dir / "arith.suite.yaml").write_text(SUITE.replace("[exact_match, contains]",
                                                            "[exact_match, contains, f1]"))
    _forbid_model(monkeypatch)
    r = PE.run_eval(qa_repo, "arith.suite.yaml")
    assert r.outcome.cached and "f1" in r.outcome.result.scores and r.commit


def test_a_killed_run_resumes_from_the_items_it_finished(qa_repo, monkeypatch):
    seen = []

    def stop_after_two(done: int, total: int) -> None:
        seen.append(done)
        if done == 2:
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        PE.run_eval(qa_repo, "arith.suite.yaml", on_progress=stop_after_two)
    assert qa_repo.artifacts(qa_repo.head_commit()).get("evals/arith/smollm2.eval.json") is None
    import demoai.eval.tasks as tasks
    calls = []
    real = tasks.run_item

    def counting(*a, **k):
        calls.append(a[2].index)
        return real(*a, **k)
    monkeypatch.setattr("demoai.eval.run.run_item", counting)
    r = PE.run_eval(qa_repo, "arith.suite.yaml")
    assert r.outcome.resumed == 2 and calls == [2, 3, 4] and r.outcome.result.counts["examples"] == 5


@pytest.mark.parametrize("edit, error, words", [
    (lambda s: s.replace("[exact_match, contains]", "[exact_match, contians]"), E.InvalidArtifact,
     "did you mean 'contains'"),
    (lambda s: s.replace("{{question}}", "{{questoin}}"), E.InvalidArtifact, "no column(s) questoin"),
    (lambda s: s.replace("[exact_match, contains]", "[acc]"), E.InvalidArtifact,
     "needs loglikelihoods"),
    (lambda s: s.replace("data/arith.jsonl", "data/none.jsonl"), E.PathNotFound, "not committed"),
    (lambda s: s.replace("name: arith", "name: arith\nmetrcs: [f1]"), E.InvalidArtifact, "unknown key"),
])
def test_bad_suites_are_refused_before_anything_runs_or_commits(qa_repo, tmp_dir, monkeypatch, edit, error, words):
    (tmp_dir / "arith.suite.yaml").write_text(edit(SUITE))
    head = qa_repo.head_commit()
    _forbid_model(monkeypatch)
    with pytest.raises(error) as e:
        PE.run_eval(qa_repo, "arith.suite.yaml")
    assert words in str(e.value)
    assert qa_repo.head_commit() == head


def test_a_model_that_is_not_in_the_tree_is_a_clear_error(qa_repo):
    with pytest.raises(E.PathNotFound, match="not committed"):
        PE.run_eval(qa_repo, "arith.suite.yaml", model="models/nope.gguf")


def test_rows_without_a_reference_are_errored_and_counted_never_scored_zero(repo, tmp_dir):
    rows = [dict(q) for q in QA[:3]]
    rows[1]["answer"] = None
    tmp_dir.gen({"data/arith.jsonl": rows, "arith.suite.yaml": SUITE})
    add(repo, [tmp_dir / "data", tmp_dir / "arith.suite.yaml"])
    commit(repo, "data")
    res = PE.run_eval(repo, "arith.suite.yaml").outcome.result
    assert res.counts == {"examples": 3, "scored": 2, "errored": 1}
    assert res.scores["contains"]["n"] == 2
    ex = PE.show_eval(repo, "evals/arith/smollm2.eval.json", examples=3).examples
    assert "no reference" in ex[1]["error"] and "score:contains" not in ex[1]


def test_compare_gate_and_diff_pair_items_and_commit_the_decision(qa_repo, tmp_dir, cli):
    PE.run_eval(qa_repo, "arith.suite.yaml")
    base = qa_repo.head_commit()
    (tmp_dir / "arith.suite.yaml").write_text(SUITE.replace("max_tokens: 6", "max_tokens: 1"))
    add(qa_repo, [tmp_dir / "arith.suite.yaml"])
    commit(qa_repo, "one token answers")
    PE.run_eval(qa_repo, "arith.suite.yaml")
    c = PE.compare_evals(qa_repo, f"{base}:evals/arith/smollm2.eval.json", "evals/arith/smollm2.eval.json")
    m = {x.metric: x for x in c.metrics}["contains"]
    assert m.n_shared == 5 and m.binary and m.mcnemar is not None
    assert "pins.params" in c.inputs_changed
    changed = set(m.flips["pass_to_fail"]) | set(m.flips["fail_to_pass"])
    a = {e["item"]: e["score:contains"] for e in PE.show_eval(qa_repo, f"{base}:evals/arith/smollm2.eval.json", examples=9).examples}
    b = {e["item"]: e["score:contains"] for e in PE.show_eval(qa_repo, "evals/arith/smollm2.eval.json", examples=9).examples}
    assert changed == {k for k in a if a[k] != b[k]}
    res = CliRunner().invoke(main, ["eval", "gate", "-s", "arith.suite.yaml", "--base", base,
                                    "--metric", "contains", "--json"])
    out = json.loads(res.stdout)
    assert res.exit_code == {"pass": 0, "fail": 1, "inconclusive": 3}[out["outcome"]]
    rec = qa_repo.artifact_at("HEAD", out["path"])
    assert isinstance(rec, GateRecord) and rec.outcome == out["outcome"] and rec.metric == "contains"
    diff = cli("diff", base, "HEAD~1").output
    assert "contains" in diff and "McNemar p" in diff


FAILING = """name: failing
model: smollm2
parameters: {temperature: 0, max_tokens: 8}
cases:
  - name: passes
    prompt: "What is 2 + 3? Answer with the number only."
    assert: [{type: contains, value: "5"}]
  - name: fails
    prompt: "Say hello."
    assert: [{type: equals, value: "this exact sentence"}]
"""


def test_eval_test_exit_codes_and_junit(repo, tmp_dir):
    tmp_dir.gen({"suites/failing.suite.yaml": FAILING})
    res = CliRunner().invoke(main, ["eval", "test", "suites", "--junit", "r.xml"])
    assert res.exit_code == 1, res.output
    assert "1 failed, 1 passed" in res.output
    import xml.etree.ElementTree as ET
    root = ET.parse(tmp_dir / "r.xml").getroot()
    assert root.get("tests") == "2" and root.get("failures") == "1"
    tmp_dir.gen({"suites/broken.suite.yaml": FAILING.replace("type: equals", "type: equels")})
    res = CliRunner().invoke(main, ["eval", "test", "suites"])
    assert res.exit_code == 2 and "equels" in res.output


def test_the_shipped_sanity_suite_passes_through_eval_test(repo, tmp_dir):
    src = Path(__import__("demoai").__file__).parent / "data" / "smollm2.suite.yaml"
    (tmp_dir / "smollm2.suite.yaml").write_text(src.read_text())
    res = CliRunner().invoke(main, ["eval", "test"])
    assert res.exit_code == 0, res.output
    assert "15 passed" in res.output


MC = [{"id": "m1", "q": "The sky on a clear day is", "choices": ["blue", "green", "salt"], "label": "blue"},
      {"id": "m2", "q": "Two plus two equals", "choices": ["five", "four", "ten"], "label": "four"},
      {"id": "m3", "q": "Water freezes at zero degrees", "choices": ["Celsius", "meters"], "label": "Celsius"}]
TEXTS = [{"text": "The quick brown fox jumps over the lazy dog."},
         {"text": "Paris is the capital of France, and it is known for the Eiffel Tower."}]


def test_multiple_choice_and_perplexity_scores_come_from_the_backend_log_likelihoods(repo, tmp_dir):
    import math
    from demoai.engines.llm.llamacpp import LlamaCppBackend
    from demoai.registry.defaults import default_gguf_path
    tmp_dir.gen({"mc.jsonl": MC, "texts.jsonl": TEXTS,
                 "mc.suite.yaml": "name: mc\ntask: multiple_choice\ndataset: mc.jsonl\nkey: id\n"
                                  "template: \"{{q}}\"\nchoices: choices\ntarget: label\n",
                 "ppl.suite.yaml": "name: ppl\ntask: perplexity\ndataset: texts.jsonl\ntext: text\n"})
    add(repo, [tmp_dir / "mc.jsonl", tmp_dir / "texts.jsonl"])
    commit(repo, "data")
    mc = PE.run_eval(repo, "mc.suite.yaml").outcome.result
    ppl = PE.run_eval(repo, "ppl.suite.yaml").outcome.result
    with LlamaCppBackend(default_gguf_path(), threads=1) as b:
        acc, acc_norm = [], []
        for row in MC:
            lls = [r.logprob for r in b.loglikelihood([(row["q"], " " + c) for c in row["choices"]])]
            gold = row["label"] if isinstance(row["label"], int) else row["choices"].index(row["label"])
            acc.append(float(max(range(len(lls)), key=lambda i: lls[i]) == gold))
            norm = [ll / len(c) for ll, c in zip(lls, row["choices"])]
            acc_norm.append(float(max(range(len(norm)), key=lambda i: norm[i]) == gold))
        rolled = b.loglikelihood_rolling([t["text"] for t in TEXTS])
    assert mc.scores["acc"]["value"] == pytest.approx(sum(acc) / 3)
    assert mc.scores["acc_norm"]["value"] == pytest.approx(sum(acc_norm) / 3)
    want = math.exp(-sum(r.logprob for r in rolled) / sum(r.n_tokens for r in rolled))
    assert ppl.scores["perplexity"]["value"] == pytest.approx(want, rel=1e-6)
    lo, hi = ppl.scores["perplexity"]["ci"]
    assert lo <= ppl.scores["perplexity"]["value"] <= hi


def test_arena_with_human_votes_rates_and_commits(repo, tmp_dir):
    import shutil
    from demoai.objects import ArenaResult
    from demoai.registry.defaults import default_gguf_path
    shutil.copyfile(default_gguf_path(), tmp_dir / "other.gguf")
    tmp_dir.gen({"prompts.jsonl": [{"prompt": "Say hi."}, {"prompt": "Name a color."}]})
    add(repo, [tmp_dir / "prompts.jsonl", tmp_dir / "other.gguf"])
    commit(repo, "prompts")
    # a person who always prefers the answer shown first: position bias, cancelled by both orders
    res = CliRunner().invoke(main, ["arena", "run", "--models", "smollm2,other.gguf", "--prompts",
                                    "prompts.jsonl", "--human"], input="a\n" * 4)
    assert res.exit_code == 0, res.output
    rec = repo.artifact_at("HEAD", "evals/arena/arena.arena.json")
    assert isinstance(rec, ArenaResult) and rec.counts["battles"] == 4 and rec.counts["errored"] == 0
    rows = {r["model"]: r for r in rec.leaderboard["rows"]}
    assert rows["smollm2"]["wins"] == rows["other.gguf"]["wins"] == 2
    assert abs(rows["smollm2"]["rating"] - rows["other.gguf"]["rating"]) < 1e-6
    png = tmp_dir / "evals" / "arena" / "arena.ratings.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_evals_table_in_query_and_eval_bench(qa_repo, tmp_dir, cli):
    PE.run_eval(qa_repo, "arith.suite.yaml")
    (tmp_dir / "arith.suite.yaml").write_text(SUITE.replace("max_tokens: 6", "max_tokens: 2"))
    add(qa_repo, [tmp_dir / "arith.suite.yaml"])
    commit(qa_repo, "shorter")
    second = PE.run_eval(qa_repo, "arith.suite.yaml")
    res = cli("query", "SELECT short_id, metric, value, examples FROM evals WHERE metric = 'contains'",
              "--json")
    rows = json.loads(res.output)
    assert len(rows) == 2 and rows[0]["short_id"] == second.commit[:12] and rows[0]["examples"] == 5
    assert rows[0]["value"] == pytest.approx(second.outcome.result.scores["contains"]["value"])
    out = json.loads(cli("eval", "bench", "-p", "16", "-n", "4", "-r", "1", "--json").output)
    assert out["pp"]["n_tokens"] == 16 and out["tg"]["n_tokens"] == 4
    assert out["pp"]["tokens_per_s"]["mean"] > 0 and out["tg"]["tokens_per_s"]["mean"] > 0


def test_an_endpoint_that_does_not_answer_is_a_clear_error_and_nothing_is_committed(qa_repo, tmp_dir):
    from tests.helpers.tiny import free_port
    head = qa_repo.head_commit()
    dead = f"http://127.0.0.1:{free_port()}/v1"
    with pytest.raises(E.ModelError, match="every example failed") as e:
        PE.run_eval(qa_repo, "arith.suite.yaml", model="openai:nobody", base_url=dead, timeout=2.0,
                    limit=2)
    assert qa_repo.head_commit() == head and "nobody" in str(e.value.fields.get("model", ""))

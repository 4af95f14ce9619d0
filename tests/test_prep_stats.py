"""``demoai data stats``: reports stored with the version, their history, the language mix
(and the ``language`` clean rule) and the embedding diversity."""
from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pyarrow as pa
import pytest

from demoai.porcelain import data as D
from demoai.porcelain import open_repository
from demoai.prep import diversity as DV
from demoai.prep import language as LG
from tests.helpers.datarepo import committed_dataset, head_commit

SENTENCES = [
    ("en", "The weather is lovely today and we are going to the park with the children."),
    ("de", "Das Wetter ist heute sehr schön und wir gehen mit den Kindern in den Park."),
    ("fr", "Il fait très beau aujourd'hui et nous allons au parc avec les enfants."),
    ("es", "Hoy hace muy buen tiempo y vamos al parque con los niños."),
    ("it", "Oggi il tempo è bellissimo e andiamo al parco con i bambini."),
    ("en2", "Please reset my password, the login page keeps rejecting it."),
    ("nl", "Het weer is vandaag heerlijk en we gaan met de kinderen naar het park."),
    ("pt", "O tempo está ótimo hoje e vamos ao parque com as crianças."),
]


def _rows(n: int = 12) -> list[dict]:
    return [{"id": i, "text": f"row {i} talks about subject {i} in {i % 5} distinct ways",
             "label": "ab"[i % 2]} for i in range(n)]


_setup = committed_dataset

_head = head_commit


def _stats(cli, *args: str) -> dict:
    return json.loads(cli("data", "stats", "train.jsonl", "-c", "text", "--no-diversity",
                          *args, "--json").stdout)


def test_stats_are_committed_with_lineage_and_reused(tmp_dir, cli, monkeypatch) -> None:
    _setup(tmp_dir, cli, _rows())
    first = _stats(cli)
    assert first["source"] == "computed" and first["saved"] and first["stats"]["rows"] == 12
    assert first["saved"] == _head(tmp_dir)
    repo = open_repository(tmp_dir)
    try:
        ds = repo.artifact_at("HEAD", "train.jsonl")
        lin = repo.lineage(first["saved"])
        assert lin["inputs"]["source"] == ds.digest == first["digest"]
        assert repo.artifact_at("HEAD", "train.jsonl.prep/stats.parquet").key == "statistic"
    finally:
        repo.close()
    # unchanged version and parameters: read back, nothing computed, nothing committed
    from demoai.prep import stats as S

    def boom(*a, **k):
        raise AssertionError("the stored report should have been read")
    with monkeypatch.context() as m:
        m.setattr(S, "quality_report", boom)
        again = _stats(cli)
    assert again["source"] == "stored" and again["up_to_date"] and again["saved"] is None
    assert again["stats"] == first["stats"] and _head(tmp_dir) == first["saved"]
    text = cli("data", "stats", "train.jsonl", "-c", "text", "--no-diversity").stdout
    assert "stored report reused" in text and "nothing committed" in text
    # other parameters: computed again, and the stored report replaced
    other = _stats(cli, "--no-near")
    assert other["source"] == "computed" and other["saved"]
    assert other["stats"]["near_duplicate_rate"] is None
    # a version that is not HEAD's is measured but never committed over HEAD's report
    cli("data", "clean", "train.jsonl", "-r", "length:min=47", "-c", "text")
    head = _head(tmp_dir)
    old = _stats(cli, "--rev", "HEAD~1")
    assert old["saved"] is None and "not stored" in old["note"] and _head(tmp_dir) == head


def test_stats_history_reads_stored_reports_and_computes_only_missing(tmp_dir, cli,
                                                                     monkeypatch) -> None:
    rows = _rows()
    rows[5]["text"] = rows[4]["text"]
    _setup(tmp_dir, cli, rows)
    v1 = _stats(cli)                                       # stored for version 1
    cli("data", "dedup", "train.jsonl", "-c", "text")      # version 2: no stored report
    cli("data", "clean", "train.jsonl", "-r", "length:min=47", "-c", "text")
    v3 = _stats(cli)                                       # stored for version 3
    from demoai.prep import stats as S
    real, calls = S.quality_report, []

    def counting(*a, **k):
        calls.append(1)
        return real(*a, **k)
    monkeypatch.setattr(S, "quality_report", counting)
    hist = json.loads(cli("data", "stats", "train.jsonl", "-c", "text", "--no-diversity",
                          "--history", "--plot", "plots", "--json").stdout)
    assert [h["source"] for h in hist] == ["stored", "computed", "stored"]
    assert len(calls) == 1                                 # only the missing version
    assert [h["stats"]["rows"] for h in hist] == [2, 11, 12] == [v3["stats"]["rows"], 11, 12]
    assert hist[0]["stats"] == v3["stats"] and hist[2]["stats"] == v1["stats"]
    assert hist[2]["stats"]["duplicate_rate"] == pytest.approx(1 / 12)
    assert hist[1]["stats"]["duplicate_rate"] == 0
    # the computed one equals what stats computes for that version
    mid = D.stats(open_repository(tmp_dir), "train.jsonl", column="text", rev=hist[1]["commit"],
                  diversity=False)
    assert mid.stats == hist[1]["stats"]
    assert (tmp_dir / "plots" / "history.png").read_bytes()[:4] == b"\x89PNG"
    text = cli("data", "stats", "train.jsonl", "-c", "text", "--no-diversity",
               "--history").stdout
    assert "oldest first" in text and "computed now (no stored report)" in text
    cells = [c.strip() for c in next(x for x in text.splitlines()
                                     if x.strip().startswith("rows ")).split("│")]
    assert cells[1:4] == ["12", "11", "2"]
    assert cells[4].startswith("-10")                      # how the figure moved


def test_stats_report_table_round_trip() -> None:
    from demoai.prep.stats import report_from_table, report_table
    st = {"rows": 3, "chars_mean": 1.5, "near_duplicate_rate": None, "language_top": "en",
          "labels": [{"label": "a", "rows": 2, "share": 2 / 3},
                     {"label": "b", "rows": 1, "share": 1 / 3}],
          "languages": [{"language": "en", "rows": 3, "share": 1.0}]}
    t = report_table(st, {"digest": "blake3:x", "params": {"near": False}})
    assert t.schema.names == ["statistic", "value", "text"]
    back, meta = report_from_table(t)
    assert back == st and meta == {"digest": "blake3:x", "params": {"near": False}}


# ---- language --------------------------------------------------------------------------------

def test_language_rule_and_mix_follow_the_detector(tmp_dir, cli) -> None:
    py3langid = pytest.importorskip("py3langid")
    expected = {k: py3langid.classify(t)[0] for k, t in SENTENCES}
    assert {expected["en"], expected["de"], expected["fr"], expected["es"]} == \
        {"en", "de", "fr", "es"}                              # the detector's own answers
    cli("init")
    tmp_dir.gen({"train.jsonl": [{"id": k, "text": t} for k, t in SENTENCES]})
    cli("add", "train.jsonl", "--key", "id")
    cli("commit", "-m", "import")
    st = _stats(cli)["stats"]
    assert {d["language"]: d["rows"] for d in st["languages"]} == dict(Counter(expected.values()))
    assert st["language_count"] == len(set(expected.values()))
    res = json.loads(cli("data", "clean", "train.jsonl", "-r", "language:keep=en|de", "-c",
                         "text", "--json").stdout)
    kept = {json.loads(x)["id"] for x in (tmp_dir / "train.jsonl").read_text().splitlines()}
    assert kept == {k for k, lang in expected.items() if lang in ("en", "de")}
    assert res["summary"]["rules"]["language"]["removed"] == len(SENTENCES) - len(kept)
    why = json.loads(cli("data", "why", "train.jsonl", "fr", "--json").stdout)["entries"]
    assert why[0]["rule"] == "language" and f"language {expected['fr']}" in why[0]["detail"]
    cli("data", "clean", "train.jsonl", "-r", "language:drop=de", "-c", "text")
    kept2 = {json.loads(x)["id"] for x in (tmp_dir / "train.jsonl").read_text().splitlines()}
    assert kept2 == {k for k in kept if expected[k] != "de"}
    err = json.loads(cli("data", "clean", "train.jsonl", "-r", "language:keep=english",
                         "--json", code=1).stderr)["error"]
    assert err["code"] == "invalid_artifact" and "unknown language 'english'" in err["message"]


def test_without_a_detector_the_rule_is_refused_and_stats_say_so(tmp_dir, cli,
                                                                 monkeypatch) -> None:
    import sys
    monkeypatch.setitem(sys.modules, "py3langid", None)
    monkeypatch.setitem(sys.modules, "py3langid.langid", None)
    LG._load.cache_clear()
    monkeypatch.setattr(LG, "_load", LG._load.__wrapped__)
    assert not LG.detector_available() and LG.detector_name() is None
    _setup(tmp_dir, cli, _rows(4))
    head = _head(tmp_dir)
    err = json.loads(cli("data", "clean", "train.jsonl", "-r", "language:keep=en", "--json",
                         code=1).stderr)["error"]
    assert err["code"] == "backend_unavailable" and "py3langid" in err["message"]
    assert _head(tmp_dir) == head and not (tmp_dir / "train.jsonl.prep").exists()
    st = _stats(cli)["stats"]
    assert st["language_note"] == "not measured (no detector installed)"
    assert "languages" not in st
    text = cli("data", "stats", "train.jsonl", "-c", "text", "--no-diversity").stdout
    assert "not measured (no detector installed)" in text


# ---- embedding diversity ---------------------------------------------------------------------

def _numpy_diversity(vec: np.ndarray, threshold: float) -> tuple[float, float, int]:
    v = vec / np.linalg.norm(vec, axis=1, keepdims=True)
    n = len(v)
    sims = [float(v[i] @ v[j]) for i in range(n) for j in range(i + 1, n)]
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            i = parent[i]
        return i
    for i in range(n):
        for j in range(i + 1, n):
            if v[i] @ v[j] >= threshold:
                parent[find(i)] = find(j)
    return (float(np.mean([1 - s for s in sims])), float(np.mean([s >= threshold for s in sims])),
            len({find(i) for i in range(n)}))


def test_embedding_diversity_matches_numpy_on_planted_vectors() -> None:
    rng = np.random.default_rng(7)
    base = rng.normal(size=(30, 16))
    vec = np.concatenate([base, base[:6] + 0.01 * rng.normal(size=(6, 16))])  # 6 near copies
    texts = [f"t{i}" for i in range(len(vec))]
    table = dict(zip(texts, vec))
    d = DV.embedding_diversity(texts, lambda ts: np.stack([table[t] for t in ts]),
                               threshold=0.95)
    dist, near, groups = _numpy_diversity(vec, 0.95)
    assert d["rows"] == 36 and d["groups"] == groups == 30
    assert d["mean_distance"] == pytest.approx(dist) and d["near_pairs"] == pytest.approx(near)
    assert near == pytest.approx(6 / (36 * 35 / 2))
    # a seeded sample: the rows numpy's default_rng(seed) draws, in row order
    s = DV.embedding_diversity(texts, lambda ts: np.stack([table[t] for t in ts]), sample=10,
                               seed=3, threshold=0.95)
    idx = np.sort(np.random.default_rng(3).choice(36, 10, replace=False))
    assert s["rows"] == 10 and s["mean_distance"] == pytest.approx(
        _numpy_diversity(vec[idx], 0.95)[0])


def test_stats_embedding_diversity_with_wordllama(tmp_dir, cli) -> None:
    pytest.importorskip("wordllama")
    rows = [{"id": k, "text": t} for k, t in SENTENCES] + \
        [{"id": "dup", "text": SENTENCES[0][1].replace("lovely", "lovely,")}]
    cli("init")
    tmp_dir.gen({"train.jsonl": rows})
    cli("add", "train.jsonl", "--key", "id")
    cli("commit", "-m", "import")
    st = json.loads(cli("data", "stats", "train.jsonl", "-c", "text", "--no-language",
                        "--json").stdout)["stats"]
    vec = np.asarray(DV.default_embedder()([r["text"] for r in rows]), dtype=np.float64)
    dist, near, groups = _numpy_diversity(vec, DV.DEFAULT_COSINE)
    assert st["embedding_sample"] == len(rows) and st["embedding_cosine"] == DV.DEFAULT_COSINE
    assert st["embedding_distance_mean"] == pytest.approx(dist, abs=1e-6)
    assert st["embedding_near_pairs"] == pytest.approx(near) and near > 0
    assert st["embedding_groups"] == groups < len(rows)
    assert st["language_note"] == "not measured (turned off)"


def test_language_mix_of_an_arrow_column_matches_detector() -> None:
    pytest.importorskip("py3langid")
    det = LG.language_detector()
    texts = [t for _, t in SENTENCES] + ["", "   "]
    mix, k = LG.language_mix(pa.array(texts).to_pylist(), det)
    want = Counter(det._model.classify(t)[0] for _, t in SENTENCES)
    want["und"] = 2
    assert k == len(texts) and {d["language"]: d["rows"] for d in mix} == dict(want)

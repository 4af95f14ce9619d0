"""``demoai data``: each step on a real temp repository, through the CLI and porcelain."""
from __future__ import annotations

import json

import pytest

from demoai.porcelain import data as D
from demoai.porcelain import open_repository
from tests.helpers.datarepo import committed_dataset, head_commit


def _rows(n: int, start: int = 0) -> list[dict]:
    return [{"id": i, "text": f"row {i} talks about subject {i} in {i % 5} distinct ways today",
             "label": "ab"[i % 2], "score": i} for i in range(start, start + n)]


_setup = committed_dataset

_head = head_commit


def _keys(tmp_dir, name: str = "train.jsonl") -> set[int]:
    return {json.loads(line)["id"] for line in (tmp_dir / name).read_text().splitlines()}


def _why(cli, key: str) -> dict:
    return json.loads(cli("data", "why", "train.jsonl", key, "--json").stdout)


def test_clean_redacts_pii_removes_empty_and_why_explains(tmp_dir, cli) -> None:
    rows = _rows(10)
    rows[3]["text"] = "mail jane.roe@example.org or call +1 415-555-0134 now"
    rows[6]["text"] = "   "
    _setup(tmp_dir, cli, rows)
    res = json.loads(cli("data", "clean", "train.jsonl", "-r", "whitespace", "-r", "pii",
                         "-r", "empty", "-c", "text", "--json").stdout)
    assert res["rows_in"] == 10 and res["rows_out"] == 9 and res["commit"]
    assert res["summary"]["redactions"]["email"] == 1 and res["summary"]["redactions"]["phone"] == 1
    text = {json.loads(x)["id"]: json.loads(x)["text"]
            for x in (tmp_dir / "train.jsonl").read_text().splitlines()}
    assert 6 not in text and "[EMAIL]" in text[3] and "[PHONE]" in text[3]
    assert "example.org" not in text[3]
    w = _why(cli, "3")
    assert w["present"] and {e["rule"] for e in w["entries"]} == {"pii"}
    assert any("email" in e["detail"] for e in w["entries"])
    w = _why(cli, "6")
    assert not w["present"]
    assert [e["rule"] for e in w["entries"] if e["action"] == "removed"] == ["empty"]
    assert _why(cli, "1")["entries"] == []
    stat = json.loads(cli("diff", "HEAD~1", "HEAD", "--json").stdout)
    assert "train.jsonl" in json.dumps(stat)
    again = json.loads(cli("data", "clean", "train.jsonl", "-r", "pii", "--json").stdout)
    assert again["up_to_date"] and again["commit"] is None


def test_dedup_clusters_and_incremental_hashing(tmp_dir, cli) -> None:
    rows = _rows(30)
    rows[7]["text"] = rows[2]["text"].upper() + "  "             # exact after normalization
    rows[9]["text"] = rows[4]["text"] + " indeed"                # near-duplicate
    _setup(tmp_dir, cli, rows)
    res = json.loads(cli("data", "dedup", "train.jsonl", "-c", "text", "--json").stdout)
    assert res["summary"]["dropped"] == {"exact": 1, "minhash": 1}
    assert res["summary"]["hashed"] == 30 and res["summary"]["reused"] == 0
    assert _keys(tmp_dir) == set(range(30)) - {7, 9}
    w = _why(cli, "9")["entries"]
    assert w[0]["rule"] == "minhash" and w[0]["duplicate_of"] == "4" and w[0]["similarity"] >= 0.7
    assert _why(cli, "7")["entries"][0]["duplicate_of"] == "2"
    # add 5 rows, one a near-duplicate of a kept row, one an edit of a kept row
    more = _rows(5, start=100)
    more[1]["text"] = rows[11]["text"] + " again"
    with open(tmp_dir / "train.jsonl", "a") as f:
        f.write("".join(json.dumps(r) + "\n" for r in more))
    cli("commit", "train.jsonl", "-m", "more rows")
    res = json.loads(cli("data", "dedup", "train.jsonl", "-c", "text", "--json").stdout)
    assert res["summary"]["hashed"] == 5 and res["summary"]["reused"] == 28
    assert res["summary"]["dropped"]["minhash"] == 1
    assert 101 not in _keys(tmp_dir)
    assert _why(cli, "101")["entries"][0]["duplicate_of"] == "11"


def test_dedup_against_other_dataset(tmp_dir, cli) -> None:
    _setup(tmp_dir, cli, _rows(10))
    batch = _rows(4, start=50)
    batch[0]["text"] = _rows(10)[5]["text"]
    tmp_dir.gen({"batch.jsonl": batch})
    cli("add", "batch.jsonl", "--key", "id")
    cli("commit", "-m", "batch")
    res = json.loads(cli("data", "dedup", "batch.jsonl", "-c", "text", "--against", "main",
                         "--json").stdout)
    assert res["rows_out"] == 3 and res["summary"]["against_rows"] == 10
    w = json.loads(cli("data", "why", "batch.jsonl", "50", "--json").stdout)["entries"]
    assert w[0]["duplicate_of"] == "train.jsonl@main:5"


def test_split_is_stable_when_rows_are_added(tmp_dir, cli) -> None:
    _setup(tmp_dir, cli, _rows(200))
    cli("data", "split", "train.jsonl", "--ratios", "0.8,0.1,0.1")
    before = {n: _keys(tmp_dir, f"train.{n}.jsonl") for n in ("train", "validation", "test")}
    assert sum(map(len, before.values())) == 200 and 120 < len(before["train"]) < 190
    with open(tmp_dir / "train.jsonl", "a") as f:
        f.write("".join(json.dumps(r) + "\n" for r in _rows(50, start=1000)))
    cli("commit", "train.jsonl", "-m", "more")
    cli("data", "split", "train.jsonl", "--ratios", "0.8,0.1,0.1")
    after = {n: _keys(tmp_dir, f"train.{n}.jsonl") for n in before}
    for n in before:
        assert before[n] <= after[n]
    assert sum(map(len, after.values())) == 250
    res = json.loads(cli("data", "split", "train.jsonl", "--ratios", "0.5,0.5", "--stratify",
                         "label", "--names", "a,b", "--json").stdout)
    assert res["summary"]["strata"] == {"a": {"a": 63, "b": 62}, "b": {"a": 63, "b": 62}}
    lineage = json.loads(cli("show", "HEAD", "--json").stdout)
    assert res["source_digest"] in json.dumps(lineage)


def test_contamination_finds_planted_overlaps_and_removes_them(tmp_dir, cli) -> None:
    import random
    rnd = random.Random(7)
    train = [{"id": i, "text": " ".join(f"w{rnd.randrange(5000)}" for _ in range(30))}
             for i in range(300)]
    test = [{"id": i, "text": " ".join(f"w{rnd.randrange(5000)}" for _ in range(25))}
            for i in range(40)]
    test[4]["text"] = "intro words " + " ".join(train[77]["text"].split()[5:20]) + " outro"
    test[9]["text"] = train[150]["text"].replace("w", "W")
    _setup(tmp_dir, cli, train)
    tmp_dir.gen({"test.jsonl": test})
    cli("add", "test.jsonl", "--key", "id")
    cli("commit", "-m", "test set")
    rep = json.loads(cli("data", "contamination", "test.jsonl", "--against", "train.jsonl",
                         "--json").stdout)
    assert rep["contaminated"] == 2
    hits = {(h["key"], h["method"]): h for h in rep["hits"]}
    assert hits[("4", "ngram")]["train_key"] == "77" and hits[("4", "ngram")]["ngrams"] == 3
    assert hits[("9", "minhash")]["train_key"] == "150"
    head = _head(tmp_dir)
    rep = json.loads(cli("data", "contamination", "test.jsonl", "--against", "main", "--remove",
                         "--json").stdout)
    assert rep["removed"]["commit"] and _head(tmp_dir) != head
    assert _keys(tmp_dir, "test.jsonl") == set(range(40)) - {4, 9}


@pytest.mark.parametrize("args, code, needle", [
    (["clean", "train.jsonl", "-r", "pij"], "invalid_artifact", "did you mean 'pii'"),
    (["clean", "train.jsonl", "-r", "pii", "-c", "txt"], "invalid_artifact", "did you mean 'text'"),
    (["clean", "train.jsonl", "-r", "pii", "-c", "score"], "invalid_artifact", "not text"),
    (["dedup", "train.jsonl", "--threshold", "1.5"], "invalid_artifact", "(0, 1]"),
    (["dedup", "train.jsonl", "--threshold", "0"], "invalid_artifact", "(0, 1]"),
    (["clean", "train.jsonl", "-r", "length:unit=words,min=500", "-c", "text"],
     "invalid_artifact", "--allow-empty"),
    (["split", "train.jsonl", "--ratios", "0.8,0.3"], "invalid_artifact", "summing to 1"),
    (["dedup", "nope.jsonl"], "path_not_found", "nope.jsonl"),
])
def test_bad_input_is_a_typed_error_and_nothing_is_committed(tmp_dir, cli, args, code,
                                                             needle) -> None:
    _setup(tmp_dir, cli, _rows(6))
    head, before = _head(tmp_dir), (tmp_dir / "train.jsonl").read_bytes()
    res = cli("data", *args, "--json", code=1)
    err = json.loads(res.stderr.strip().splitlines()[-1])["error"]
    assert err["code"] == code and needle in err["message"], err
    assert _head(tmp_dir) == head and (tmp_dir / "train.jsonl").read_bytes() == before
    assert not (tmp_dir / "train.jsonl.prep").exists()


def test_empty_result_commits_with_allow_empty(tmp_dir, cli) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq
    cli("init")
    pq.write_table(pa.Table.from_pylist(_rows(3)), tmp_dir / "train.parquet")
    cli("add", "train.parquet", "--key", "id")
    cli("commit", "-m", "import")
    cli("data", "clean", "train.parquet", "-r", "length:unit=words,min=500", "-c", "text",
        code=1)
    cli("data", "clean", "train.parquet", "-r", "length:unit=words,min=500", "-c", "text",
        "--allow-empty")
    assert pq.read_table(tmp_dir / "train.parquet").num_rows == 0


def test_uncommitted_edits_are_not_overwritten(tmp_dir, cli) -> None:
    _setup(tmp_dir, cli, _rows(4))
    with open(tmp_dir / "train.jsonl", "a") as f:
        f.write(json.dumps(_rows(1, start=9)[0]) + "\n")
    head = _head(tmp_dir)
    res = cli("data", "dedup", "train.jsonl", "--json", code=1)
    assert json.loads(res.stderr)["error"]["code"] == "dirty_working_tree"
    assert _head(tmp_dir) == head and 9 in _keys(tmp_dir)


def test_run_steps_commits_each_step_and_stats_history(tmp_dir, cli) -> None:
    rows = _rows(20)
    rows[1]["text"] = "reach me at bob@example.com " + rows[1]["text"]
    rows[5]["text"] = rows[4]["text"]
    _setup(tmp_dir, cli, rows)
    tmp_dir.gen({"steps.yaml": "steps:\n"
                 "  - clean: {path: train.jsonl, column: text, rules: [whitespace, pii]}\n"
                 "  - dedup: {path: train.jsonl, column: text}\n"
                 "  - split: {path: train.jsonl, ratios: [0.75, 0.25], key: id}\n"})
    out = json.loads(cli("data", "run", "steps.yaml", "--json").stdout)
    assert [r["verb"] for r in out] == ["clean", "dedup", "split"] and all(r["commit"] for r in out)
    log = json.loads(cli("log", "--json").stdout)
    assert len(log) == 4
    hist = json.loads(cli("data", "stats", "train.jsonl", "-c", "text", "--history",
                          "--json").stdout)
    assert [h["stats"]["rows"] for h in hist] == [19, 20, 20]
    assert hist[-1]["stats"]["duplicate_rate"] == pytest.approx(1 / 20)
    assert hist[0]["stats"]["duplicate_rate"] == 0
    rep = json.loads(cli("data", "stats", "train.jsonl", "--plot", "plots", "--json").stdout)
    assert rep["stats"]["labels"][0]["rows"] + rep["stats"]["labels"][1]["rows"] == 19
    assert (tmp_dir / "plots" / "words.png").read_bytes()[:4] == b"\x89PNG"
    tmp_dir.gen({"bad.yaml": "- clean: {path: train.jsonl, rulez: [pii]}\n"})
    head = _head(tmp_dir)
    res = cli("data", "run", "bad.yaml", "--json", code=1)
    assert "did you mean 'rules'" in json.loads(res.stderr)["error"]["message"]
    assert _head(tmp_dir) == head


def test_porcelain_clean_rule_specs() -> None:
    assert D.rule_spec("length:unit=words,min=3") == {"name": "length", "unit": "words", "min": 3}
    assert D.rule_spec("pii:kinds=email|phone") == {"name": "pii", "kinds": ["email", "phone"]}


# ---- import / export (HF datasets), semantic dedup ----------------------------------------

def _hf_dataset():
    import datetime

    import datasets
    feats = datasets.Features({
        "id": datasets.Value("int16"), "small": datasets.Value("uint8"),
        "text": datasets.Value("string"), "label": datasets.ClassLabel(names=["neg", "pos"]),
        "meta": {"score": datasets.Value("float32"),
                 "tags": datasets.List(datasets.Value("string"))},
        "when": datasets.Value("timestamp[us, tz=UTC]"),
        "nums": datasets.List(datasets.Value("int64"))})
    utc = datetime.timezone.utc
    return datasets.Dataset.from_dict({
        "id": [1, 2, None, 4], "small": [1, None, 3, 255], "text": ["a", None, "c", "d"],
        "label": [0, 1, None, 1],
        "meta": [{"score": 1.5, "tags": ["x"]}, None, {"score": None, "tags": []},
                 {"score": 2.0, "tags": ["y", None]}],
        "when": [datetime.datetime(2024, 1, 1, tzinfo=utc), None,
                 datetime.datetime(2025, 6, 1, 12, 30, tzinfo=utc),
                 datetime.datetime(1999, 12, 31, tzinfo=utc)],
        "nums": [[1, 2], None, [], [-(2 ** 40)]]}, features=feats)


def _same(a, b) -> None:
    a, b = a.flatten_indices(), b.flatten_indices()
    assert a.features == b.features
    assert a.data.table.schema.equals(b.data.table.schema, check_metadata=False)
    assert a.data.table.equals(b.data.table)
    assert a.to_list() == b.to_list()


def test_hf_round_trip_dataset_dict_through_the_cli(tmp_dir, cli) -> None:
    import datasets
    ds = _hf_dataset()
    dd = datasets.DatasetDict({"train": ds, "test": ds.select([3, 0])})
    dd.save_to_disk(str(tmp_dir / "src"))
    cli("init")
    res = json.loads(cli("data", "import", "src", "data/hf", "--key", "text",
                         "--json", code=1).stderr)
    assert res["error"]["code"] == "invalid_artifact" or "error" in res   # key has nulls
    res = json.loads(cli("data", "import", "src", "data/hf", "--json").stdout)
    assert res["paths"] == {"train": "data/hf/train.parquet", "test": "data/hf/test.parquet"}
    assert res["rows"] == {"train": 4, "test": 2} and res["commit"]
    log = json.loads(cli("log", "--json").stdout)
    assert len(log) == 1                                  # the failed import left nothing
    cli("data", "export", "data/hf", "out")
    back = datasets.load_from_disk(str(tmp_dir / "out"))
    assert set(back) == {"train", "test"}
    for split in dd:
        _same(dd[split], back[split])
    again = json.loads(cli("data", "import", "src", "data/hf", "--json").stdout)
    assert again["up_to_date"] and again["commit"] is None
    cli("data", "export", "data/hf", "out", code=1)                     # exists: --force
    cli("data", "export", "data/hf/train.parquet", "t.jsonl")
    assert len((tmp_dir / "t.jsonl").read_text().splitlines()) == 4


def test_import_hf_object_and_to_hf_python_api(tmp_dir, repo) -> None:
    from demoai.errors import InvalidArtifact
    ds = _hf_dataset()
    with pytest.raises(InvalidArtifact):                      # the key column has a null
        D.import_hf(repo, ds, "data/one.parquet", key="id")
    assert not (tmp_dir / "data/one.parquet").exists()
    res = D.import_hf(repo, ds, "data/one.parquet")
    assert res.rows == {"": 4} and res.commit
    _same(ds, D.to_hf(repo, "data/one.parquet"))
    res = D.import_hf(repo, ds.select([0, 1]), "data/two")          # no suffix: .parquet
    assert res.paths == {"": "data/two.parquet"}
    _same(ds.select([0, 1]), D.to_hf(repo, "data/two.parquet"))
    with pytest.raises(InvalidArtifact, match="nested column 'meta'"):
        D.export_data(repo, "data/one.parquet", tmp_dir / "one.csv")
    assert not (tmp_dir / "one.csv").exists()
    out = D.export_data(repo, "data/one.parquet", tmp_dir / "one.jsonl")
    first = json.loads((tmp_dir / "one.jsonl").read_text().splitlines()[0])
    assert out.format == "jsonl" and first["meta"] == {"score": 1.5, "tags": ["x"]}


def test_import_bad_input_commits_nothing(tmp_dir, cli) -> None:
    cli("init")
    tmp_dir.gen({"rows.jsonl": _rows(3), "folder/readme.txt": "not a dataset"})
    head = _head(tmp_dir)
    err = json.loads(cli("data", "import", "nope", "x.parquet", "--json", code=1).stderr)
    assert err["error"]["code"] == "path_not_found"
    err = json.loads(cli("data", "import", "folder", "x.parquet", "--json", code=1).stderr)
    assert err["error"]["code"] == "invalid_artifact"
    err = json.loads(cli("data", "import", "rows.jsonl", "x.parquet", "--key", "nope",
                         "--json", code=1).stderr)
    assert err["error"]["fields"]["column"] == "nope"
    assert _head(tmp_dir) == head and not (tmp_dir / "x.parquet").exists()
    res = json.loads(cli("data", "import", "rows.jsonl", "data/rows.csv", "--key", "id",
                         "--json").stdout)
    assert res["paths"] == {"": "data/rows.csv"}
    assert (tmp_dir / "data/rows.csv").read_text().splitlines()[0].replace('"', "") == \
        "id,text,label,score"


def test_dedup_semantic_drops_paraphrases(tmp_dir, cli) -> None:
    rows = [{"id": 0, "text": "The cat sat on the mat all day long."},
            {"id": 1, "text": "A cat was sitting on the mat for the whole day."},
            {"id": 2, "text": "Stock markets fell sharply on Monday morning."},
            {"id": 3, "text": "How do I bake sourdough bread at home?"}]
    _setup(tmp_dir, cli, rows)
    cli("data", "dedup", "train.jsonl", "--semantic", "1.5", code=1)
    res = json.loads(cli("data", "dedup", "train.jsonl", "--semantic", "0.8", "--json").stdout)
    assert res["summary"]["dropped"] == {"exact": 0, "minhash": 0, "semantic": 1}
    assert _keys(tmp_dir) == {0, 2, 3}
    w = _why(cli, "1")["entries"][0]
    assert w["rule"] == "semantic" and w["duplicate_of"] == "0" and w["similarity"] > 0.8


def _semantic_why(tmp_dir, name: str = "train.jsonl") -> dict[str, tuple[str, float]]:
    import pyarrow.parquet as pq
    t = pq.read_table(tmp_dir / f"{name}.prep/why.parquet").to_pylist()
    return {r["key"]: (r["duplicate_of"], r["similarity"]) for r in t if r["rule"] == "semantic"}


def _lineage(tmp_dir) -> dict:
    r = open_repository(tmp_dir)
    try:
        return r.lineage(r.head_commit())
    finally:
        r.close()


def _synonyms(text: str) -> str:
    from tests.test_prep_dedup import _SYN
    return " ".join(_SYN.get(w, w) for w in text.split())


def test_dedup_semantic_searches_the_row_index_like_all_pairs(tmp_dir, cli) -> None:
    from demoai.prep.search import default_embedder, embed_texts
    from tests.test_prep_dedup import all_pairs_reference, paraphrases
    texts = paraphrases(200, seed=11)
    n = len(texts)
    embed = default_embedder()
    ref = all_pairs_reference(embed_texts(embed, texts), 0.9)
    assert len(ref) >= 10
    _setup(tmp_dir, cli, [{"id": i, "text": t} for i, t in enumerate(texts + texts[:1])])
    cli("data", "dedup", "train.jsonl")                  # MinHash only: not deduped by meaning
    assert _keys(tmp_dir) == set(range(n))
    res = json.loads(cli("data", "dedup", "train.jsonl", "--semantic", "0.9", "--json").stdout)
    s = res["summary"]
    assert s["dropped"] == {"exact": 0, "minhash": 0, "semantic": len(ref)}
    assert s["hashed"] == n                            # stored rows lacked semantic dedup
    sem = s["semantic"]
    assert (sem["embedded"], sem["indexed_rows"], sem["index"], sem["search"], sem["queries"]) \
        == (n, n, "built", "exact", n)
    assert sem["candidates"] < 3 * n                   # neighbours found, not all pairs
    assert _keys(tmp_dir) == set(range(n)) - set(ref)
    why = _semantic_why(tmp_dir)
    assert {k: d for k, (d, _) in why.items()} == {str(r): str(d) for r, (d, _) in ref.items()}
    assert all(sim >= 0.9 for _, sim in why.values())
    lineage = _lineage(tmp_dir)
    assert lineage["parameters"]["semantic_index"]["embedded"] == n
    assert lineage["parameters"]["semantic"] == 0.9
    # unchanged version: nothing hashed, embedded or committed; a looser threshold is covered
    for t in ("0.9", "0.95"):
        again = json.loads(cli("data", "dedup", "train.jsonl", "--semantic", t, "--json").stdout)
        assert again["up_to_date"] and again["summary"]["semantic"]["embedded"] == 0
        assert again["summary"]["semantic"]["queries"] == 0
    # append 3 rows (2 paraphrases of kept rows): only they are embedded and searched
    kept = sorted(_keys(tmp_dir))
    fresh = [k for k in kept if _synonyms(texts[k]) not in texts]     # new text: embedded
    new = [{"id": 1000, "text": _synonyms(texts[fresh[4]])},
           {"id": 1001, "text": "completely unrelated words about nothing at all"},
           {"id": 1002, "text": _synonyms(texts[fresh[9]])}]
    with open(tmp_dir / "train.jsonl", "a") as f:
        f.write("".join(json.dumps(r) + "\n" for r in new))
    cli("commit", "train.jsonl", "-m", "3 more rows")
    both = [texts[k] for k in kept] + [r["text"] for r in new]
    want = {str(new[r - len(kept)]["id"]): str(kept[d])
            for r, (d, _) in all_pairs_reference(embed_texts(embed, both), 0.9).items()}
    assert set(want) == {"1000", "1002"}
    res = json.loads(cli("data", "dedup", "train.jsonl", "--semantic", "0.9", "--json").stdout)
    s = res["summary"]
    assert s["hashed"] == 3 and s["reused"] == len(kept)
    assert (s["semantic"]["embedded"], s["semantic"]["queries"]) == (3, 3)
    assert {k: d for k, (d, _) in _semantic_why(tmp_dir).items()} == want
    # --no-near keeps no signatures: every row is searched again, none embedded again (the
    # new version's index is made from the last one's vectors, then reused as it is)
    for index in ("built", "reused"):
        res = json.loads(cli("data", "dedup", "train.jsonl", "--no-near", "--semantic", "0.9",
                             "--json").stdout)
        sem = res["summary"]["semantic"]
        assert res["up_to_date"] and (sem["embedded"], sem["index"]) == (0, index)
        assert sem["queries"] == len(kept) + 1


def test_dedup_semantic_against_other_datasets(tmp_dir, cli) -> None:
    from tests.test_prep_dedup import paraphrases
    texts = paraphrases(60, seed=13, frac=0.0)
    _setup(tmp_dir, cli, [{"id": i, "text": t} for i, t in enumerate(texts)])
    batch = [{"id": 50, "text": _synonyms(texts[5])},
             {"id": 51, "text": "completely unrelated words about nothing at all"},
             {"id": 52, "text": _synonyms(texts[9])}]
    tmp_dir.gen({"batch.jsonl": batch})
    cli("add", "batch.jsonl", "--key", "id")
    cli("commit", "-m", "batch")
    res = json.loads(cli("data", "dedup", "batch.jsonl", "--against", "main", "--semantic",
                         "0.9", "--json").stdout)
    s = res["summary"]
    assert res["rows_out"] == 1 and s["dropped"]["semantic"] == 2 and s["against_rows"] == 60
    assert s["semantic"]["against"]["train.jsonl@main"]["embedded"] == 60
    assert {k: d for k, (d, _) in _semantic_why(tmp_dir, "batch.jsonl").items()} == \
        {"50": "train.jsonl@main:5", "52": "train.jsonl@main:9"}
    lineage = _lineage(tmp_dir)
    assert "against:train.jsonl@main" in json.dumps(lineage["inputs"])

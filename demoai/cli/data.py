"""``demoai data``: preparation steps, each a commit with lineage (clean, dedup, split,
contamination, run), and the reports that explain them (why, stats)."""
from __future__ import annotations

from typing import Any

import click

from demoai.cli.common import (
    Bars, handle_errors, json_option, open_repo, out, print_fields, print_json, print_rows,
)
from demoai.porcelain import data as D

__all__ = ["data_group"]

_REV = click.option("--rev", default="HEAD", show_default=True,
                    help="Read the dataset as committed at REV (the result commits on HEAD).")
_COLUMN = click.option("--column", "-c", "column", multiple=True,
                       help="Text column (repeatable; default: every text column but the key).")
_MSG = click.option("-M", "--message", help="Commit message (default: verb, path and row counts).")
_EMPTY = click.option("--allow-empty", is_flag=True,
                      help="Commit even when every row is removed (refused otherwise).")


@click.group("data")
def data_group() -> None:
    """Prepare datasets: import, clean, dedup, generate, label, search, split, stats.

    Each step reads PATH as committed at a revision, writes the new version to PATH in
    the working tree and commits it (only the paths it wrote), with what it removed or
    changed kept beside it in PATH.prep/ (why.parquet; calls.parquet and rejected.parquet
    for generated rows).
    """


def _step(res: D.StepResult) -> None:
    if res.up_to_date:
        out.print(f"{res.path}: nothing to change ({res.rows_in} rows); nothing committed",
                  markup=False)
    else:
        out.print(f"[{(res.commit or '')[:10]}] data {res.verb} {res.path}: {res.rows_in} -> "
                  f"{res.rows_out} rows", markup=False)


@data_group.command("clean")
@click.argument("path")
@click.option("--rule", "-r", "rules", multiple=True,
              help="A rule NAME[:k=v,...] (repeatable, applied in order), e.g. length:unit=words,min=3.")
@click.option("--rules", "rules_file", type=click.Path(dir_okay=False),
              help="A YAML file with a list of rules (names or mappings with 'name').")
@_COLUMN
@_REV
@_EMPTY
@_MSG
@json_option
@handle_errors
def clean_cmd(path: str, rules: tuple[str, ...], rules_file: str | None, column: tuple[str, ...],
              rev: str, allow_empty: bool, message: str | None, as_json: bool) -> None:
    """Apply cleaning rules to PATH and commit it with the reason for each change.

    Rules: unicode (nfc, nfkc), whitespace, control, empty, length, gopher_repetition, pii,
    language (keep=en|fr or drop=..., where a detector is installed).
    """
    specs: list[Any] = list(rules)
    if rules_file:
        specs += D.load_rules(rules_file)
    repo = open_repo()
    with Bars(not as_json) as bars:
        res = D.clean(repo, path, specs, column=list(column) or None, rev=rev,
                      allow_empty=allow_empty, message=message, progress=bars)
    if as_json:
        return print_json(res.to_dict())
    _step(res)
    rows = [{"rule": k, "removed": v["removed"], "changed": v["changed"], "edits": v["edits"]}
            for k, v in res.summary["rules"].items()]
    print_rows(rows)
    if res.summary["redactions"]:
        print_fields([("redactions", ", ".join(f"{k} {v}" for k, v in
                                                res.summary["redactions"].items()))])


@data_group.command("dedup")
@click.argument("path")
@_COLUMN
@click.option("--threshold", "-t", type=float, default=D.DEFAULT_THRESHOLD, show_default=True,
              help="Jaccard similarity (0, 1] above which rows are near-duplicates.")
@click.option("--exact/--no-exact", default=True, show_default=True,
              help="Drop rows whose normalized text equals an earlier row's.")
@click.option("--near/--no-near", default=True, show_default=True,
              help="Drop MinHash-LSH near-duplicates (word 5-grams, 128 permutations).")
@click.option("--against", "-a", multiple=True,
              help="Also drop rows duplicating PATH[@REF], or every dataset at REF (repeatable).")
@click.option("--num-perm", type=int, default=128, show_default=True,
              help="MinHash permutations.")
@click.option("--ngram", type=int, default=5, show_default=True, help="Words per shingle.")
@click.option("--semantic", type=float, metavar="THRESHOLD",
              help="Also drop rows whose wordllama embedding has cosine >= THRESHOLD with a "
                   "kept or --against row's (searched in the cached row index; only new rows "
                   "are embedded).")
@_REV
@_EMPTY
@_MSG
@json_option
@handle_errors
def dedup_cmd(path: str, column: tuple[str, ...], threshold: float, exact: bool, near: bool,
              against: tuple[str, ...], num_perm: int, ngram: int, semantic: float | None,
              rev: str, allow_empty: bool, message: str | None, as_json: bool) -> None:
    """Drop exact and near-duplicate rows of PATH and commit it with the clusters."""
    repo = open_repo()
    with Bars(not as_json) as bars:
        res = D.dedup(repo, path, column=list(column) or None, threshold=threshold, exact=exact,
                      near=near, against=list(against), num_perm=num_perm, ngram=ngram, rev=rev,
                      allow_empty=allow_empty, message=message, semantic=semantic,
                      progress=bars)
    if as_json:
        return print_json(res.to_dict())
    _step(res)
    s = res.summary
    sem = f", {s['dropped']['semantic']} semantic" if semantic is not None else ""
    print_fields([("dropped", f"{s['dropped']['exact']} exact, {s['dropped']['minhash']} near"
                              f"{sem} (threshold {s['threshold']}, {s['bands'][0]} bands x "
                              f"{s['bands'][1]} rows)"),
                  ("hashed", f"{s['hashed']} rows ({s['reused']} reused from stored signatures)"),
                  ("against", f"{s['against_rows']} rows")])
    if semantic is not None and isinstance(s.get("semantic"), dict):
        m = s["semantic"]
        print_fields([("semantic", f"{m['embedded']} rows embedded, {m['queries']} searched "
                                   f"({m['search']} index, {m['index']})")])


@data_group.command("split")
@click.argument("path")
@click.option("--ratios", required=True, help="Split ratios summing to 1, e.g. 0.8,0.1,0.1.")
@click.option("--names", help="Split names, comma-separated (default train,validation,test).")
@click.option("--key", help="Column whose hash places a row (default: the dataset key, else the row).")
@click.option("--stratify", help="Column whose values every split holds in proportion.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the key hash.")
@_REV
@_MSG
@json_option
@handle_errors
def split_cmd(path: str, ratios: str, names: str | None, key: str | None, stratify: str | None,
              seed: int, rev: str, message: str | None, as_json: bool) -> None:
    """Split PATH by key hash into PATH_stem.NAME files and commit them."""
    repo = open_repo()
    res = D.split(repo, path, ratios, key=key, stratify=stratify, seed=seed,
                  names=names.split(",") if names else None, rev=rev, message=message)
    if as_json:
        return print_json(res.to_dict())
    if res.up_to_date:
        out.print("the splits are up to date; nothing committed", markup=False)
    else:
        out.print(f"[{(res.commit or '')[:10]}] data split {res.path}", markup=False)
    print_rows([{"split": n, "rows": c, "path": res.summary["files"][n]}
                for n, c in res.summary["counts"].items()])


@data_group.command("contamination")
@click.argument("test_path")
@click.option("--against", "-a", multiple=True, required=True,
              help="Training data: PATH[@REF], PATH,PATH, or REF for every dataset at REF.")
@_COLUMN
@click.option("--n", "n", type=int, default=D.DEFAULT_NGRAM, show_default=True,
              help="Words per n-gram of the overlap check.")
@click.option("--near/--no-near", default=True, show_default=True,
              help="Also flag MinHash near-duplicates of training rows.")
@click.option("--threshold", "-t", type=float, default=D.DEFAULT_THRESHOLD, show_default=True,
              help="Jaccard similarity (0, 1] of a near-duplicate.")
@click.option("--remove", is_flag=True, help="Commit TEST_PATH without the contaminated rows.")
@click.option("--limit", type=int, default=20, show_default=True, help="Rows of hits to print.")
@_REV
@_EMPTY
@_MSG
@json_option
@handle_errors
def contamination_cmd(test_path: str, against: tuple[str, ...], column: tuple[str, ...], n: int,
                      near: bool, threshold: float, remove: bool, limit: int, rev: str,
                      allow_empty: bool, message: str | None, as_json: bool) -> None:
    """Find rows of TEST_PATH whose n-grams or near-duplicates are in training data."""
    specs = [s for a in against for s in a.split(",") if s]
    repo = open_repo()
    with Bars(not as_json) as bars:
        rep = D.contamination(repo, test_path, specs, column=list(column) or None, n=n, near=near,
                              threshold=threshold, remove=remove, rev=rev,
                              allow_empty=allow_empty, message=message, progress=bars)
    if as_json:
        return print_json(rep.to_dict())
    out.print(f"{rep.path}: {rep.contaminated} of {rep.rows} rows contaminated "
              f"({n}-gram overlap{' or near-duplicate' if near else ''})", markup=False)
    print_rows([{k: ("-" if v is None else v) for k, v in h.items()} for h in rep.hits[:limit]])
    if len(rep.hits) > limit:
        out.print(f"… and {len(rep.hits) - limit} more", markup=False)
    if rep.removed is not None:
        _step(rep.removed)


_STAT_LABELS = [("rows", "rows"), ("empty_rows", "empty rows"), ("chars_mean", "chars mean"),
                ("chars_p50", "chars median"), ("chars_p90", "chars p90"),
                ("chars_max", "chars max"), ("words_mean", "words mean"),
                ("words_p50", "words median"), ("words_p90", "words p90"),
                ("words_max", "words max"), ("vocabulary", "vocabulary"), ("tokens", "tokens"),
                ("distinct_1", "distinct-1"), ("distinct_2", "distinct-2"),
                ("type_token_ratio", "type-token ratio"), ("duplicate_rate", "duplicate rate"),
                ("near_duplicate_rate", "near-duplicate rate"),
                ("language_count", "languages"), ("language_top", "top language"),
                ("language_top_share", "top language share"),
                ("embedding_distance_mean", "embedding distance (mean)"),
                ("embedding_near_pairs", "embedding near pairs"),
                ("embedding_groups", "embedding groups")]


def _num(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _moved(old: Any, new: Any) -> str:
    if isinstance(old, bool) or isinstance(new, bool) or not (
            isinstance(old, (int, float)) and isinstance(new, (int, float))):
        return "" if old == new else f"{_num(old)} -> {_num(new)}"
    d = new - old
    if d == 0:
        return "="
    rel = f" ({d / old:+.0%})" if old else ""
    return (f"{d:+d}" if isinstance(d, int) else f"{d:+.4g}") + rel


def _notes(st: dict[str, Any]) -> list[tuple[str, str]]:
    rows = []
    if st.get("languages"):
        rows.append(("language mix", ", ".join(
            f"{d['language']} {d['share']:.0%}" for d in st["languages"][:8]) +
            f" ({st.get('language_sample')} rows, {st.get('language_detector')})"))
    elif st.get("language_note"):
        rows.append(("language", st["language_note"]))
    if st.get("embedding_sample") is not None and st.get("embedding_note") is None:
        rows.append(("embedding diversity",
                     f"{st.get('embedding_sample')} rows sampled; pairs with cosine >= "
                     f"{st.get('embedding_cosine')} are near pairs, joined into groups"))
    elif st.get("embedding_note"):
        rows.append(("embedding diversity", st["embedding_note"]))
    return rows


def _stats_history(repo: Any, path: str, cols: list[str] | None, label: str | None,
                   rev: str, opts: dict[str, Any], limit: int, plot_dir: str | None,
                   as_json: bool) -> None:
    from rich.table import Table
    reps = D.stats_history(repo, path, column=cols, label=label, rev=rev, limit=limit,
                           plot_dir=plot_dir, **opts)
    if as_json:
        return print_json([r.to_dict() for r in reps])
    reps = reps[::-1]                           # oldest first: read left to right
    t = Table("statistic", *(r.commit[:8] for r in reps), "moved", show_edge=False,
              title=f"{reps[-1].path}: {len(reps)} version(s), oldest first", title_justify="left")
    for k, name in _STAT_LABELS:
        vals = [r.stats.get(k) for r in reps]
        if all(v is None for v in vals):
            continue
        t.add_row(name, *(_num(v) for v in vals), _moved(vals[0], vals[-1]))
    out.print(t)
    for r in reps:
        how = "stored report" if r.source == "stored" else "computed now (no stored report)"
        out.print(f"  {r.commit[:8]}  {how}  {r.message}", markup=False)
    for p in dict.fromkeys(p for r in reps for p in r.plots):
        out.print(f"wrote {p}", markup=False)


@data_group.command("stats")
@click.argument("path")
@_COLUMN
@click.option("--label", help="Label column whose balance to report (default: 'label' if present).")
@click.option("--history", is_flag=True,
              help="How each figure moved over the commits that changed PATH.")
@click.option("--limit", "-n", type=int, default=20, show_default=True,
              help="Versions shown by --history.")
@click.option("--plot", "plot_dir", type=click.Path(file_okay=False),
              help="Write PNG histograms (chars, words, labels; history.png with --history).")
@click.option("--no-near", is_flag=True, help="Skip the near-duplicate rate (MinHash).")
@click.option("--no-language", is_flag=True, help="Skip the language mix.")
@click.option("--no-diversity", is_flag=True, help="Skip the embedding diversity.")
@click.option("--no-commit", is_flag=True,
              help="Do not store the report beside the data (PATH.prep/stats.parquet).")
@_REV
@_MSG
@json_option
@handle_errors
def stats_cmd(path: str, column: tuple[str, ...], label: str | None, history: bool, limit: int,
              plot_dir: str | None, no_near: bool, no_language: bool, no_diversity: bool,
              no_commit: bool, rev: str, message: str | None, as_json: bool) -> None:
    """Quality and diversity statistics of PATH, stored with the version.

    Lengths, vocabulary, distinct-n, duplicates, labels, languages, embedding diversity.
    The report is committed at PATH.prep/stats.parquet with the dataset's digest; an
    unchanged version reuses it. --history reads the stored reports over the commits.
    """
    from rich.table import Table
    repo = open_repo()
    cols = list(column) or None
    opts = {"near": not no_near, "language": not no_language, "diversity": not no_diversity}
    if history:
        return _stats_history(repo, path, cols, label, rev, opts, limit, plot_dir, as_json)
    rep = D.stats(repo, path, column=cols, label=label, rev=rev, plot_dir=plot_dir,
                  save=not no_commit, message=message, **opts)
    if as_json:
        return print_json(rep.to_dict())
    t = Table("statistic", "value", show_edge=False, title=f"{rep.path} @ {rep.commit[:8]} "
              f"({', '.join(rep.columns)})", title_justify="left")
    for k, name in _STAT_LABELS:
        if k in rep.stats:
            t.add_row(name, _num(rep.stats.get(k)))
    out.print(t)
    if rep.stats.get("labels"):
        print_rows([{rep.label or "label": d["label"], "rows": d["rows"],
                     "share": f"{d['share']:.1%}"} for d in rep.stats["labels"]])
    print_fields(_notes(rep.stats))
    side = f"{rep.path}.prep/stats.parquet"
    if rep.saved:
        how = "read from an earlier stored report" if rep.source == "stored" else "computed"
        out.print(f"[{rep.saved[:10]}] {how}; stored at {side}", markup=False)
    elif rep.up_to_date:
        out.print(f"stored report reused ({side}); nothing committed", markup=False)
    elif rep.note:
        out.print(f"{rep.source}; {rep.note}", markup=False)
    for p in rep.plots:
        out.print(f"wrote {p}", markup=False)


@data_group.command("why")
@click.argument("path")
@click.argument("rowkey")
@_REV
@json_option
@handle_errors
def why_cmd(path: str, rowkey: str, rev: str, as_json: bool) -> None:
    """Explain what data steps did to the row ROWKEY of PATH (key value, or #N).

    Example:

    \b
        demoai data why data/train.jsonl 17
    """
    repo = open_repo()
    entries, present = D.why(repo, path, rowkey, rev=rev)
    if as_json:
        return print_json({"key": rowkey, "present": present,
                           "entries": [e.to_dict() for e in entries]})
    state = "is in" if present else "is not in"
    out.print(f"row {rowkey} {state} {path} at {rev}", markup=False)
    if not entries:
        out.print("no data step removed or changed it", markup=False)
        return
    for e in entries:
        out.print(f"  {e.commit[:8]} {e.verb}: {e.action} by {e.rule} ({e.column}): {e.detail}",
                  markup=False)


def _run_line(number: int, res: D.StepResult) -> None:
    head = f"step {number}: "
    if res.verb in ("clean", "dedup", "contamination", "split"):
        out.print(head, end="", markup=False)
        return _step(res)
    tag = f"[{res.commit[:10]}] " if res.commit else ""
    if res.verb == "stats":
        how = ("stored report reused; nothing committed" if res.up_to_date
               else f"{res.summary['source']}, stored at {res.outputs[0]}" if res.outputs
               else res.summary.get("note") or res.summary["source"])
        out.print(f"{head}{tag}data stats {res.path}: {res.rows_out} rows ({how})", markup=False)
    elif res.up_to_date:
        out.print(f"{head}data {res.verb} {res.path}: already committed; nothing committed",
                  markup=False)
    else:
        out.print(f"{head}{tag}data {res.verb} {res.path}: {res.rows_out} rows made, "
                  f"{res.summary.get('rejected', 0)} rejected", markup=False)


@data_group.command("run")
@click.argument("steps_yaml", type=click.Path(dir_okay=False))
@json_option
@handle_errors
def run_cmd(steps_yaml: str, as_json: bool) -> None:
    """Run the steps of STEPS_YAML in order, committing each in turn.

    Steps: clean, dedup, split, contamination, augment, self-instruct, stats, each a
    mapping of the verb to its options (rules, column, threshold, ratios, against, ...).
    The whole file is checked before the first step runs.
    """
    repo = open_repo()
    with Bars(not as_json) as bars:
        results = D.run_steps(repo, steps_yaml, progress=bars,
                              on_step=None if as_json else lambda s, r: _run_line(s.number, r))
    if as_json:
        print_json([r.to_dict() for r in results])


# ---- import / export ----------------------------------------------------------------------

@data_group.command("import")
@click.argument("source", type=click.Path(exists=False))
@click.argument("path")
@click.option("--format", "fmt", type=click.Choice(["hf", "parquet", "jsonl", "csv", "tsv",
                                                    "arrow"]),
              help="Source format (default: a folder is a saved HF dataset, else the extension).")
@click.option("--key", help="Key column of every dataset written.")
@_MSG
@json_option
@handle_errors
def import_cmd(source: str, fmt: str | None, path: str, key: str | None, message: str | None,
               as_json: bool) -> None:
    """Import a saved HF dataset, Parquet, JSONL or CSV file at PATH and commit it.

    SOURCE is a folder written by datasets' save_to_disk or a table file. A DatasetDict becomes PATH/SPLIT.parquet, one dataset per split; a single table
    becomes PATH (.parquet unless PATH ends in .jsonl, .csv or .tsv). Parquet keeps the
    Arrow schema and the HF features as they are.
    """
    repo = open_repo()
    res = D.import_data(repo, source, path, fmt=fmt, key=key, message=message)
    if as_json:
        return print_json(res.to_dict())
    if res.up_to_date:
        out.print(f"{path}: already holds these rows; nothing committed", markup=False)
    else:
        out.print(f"[{(res.commit or '')[:10]}] data import {source} ({res.source_format})",
                  markup=False)
    print_rows([{"split": s or "-", "rows": res.rows[s], "path": p}
                for s, p in res.paths.items()])


@data_group.command("export")
@click.argument("path")
@click.argument("out_path", metavar="OUT")
@click.option("--format", "fmt", type=click.Choice(["hf", "parquet", "jsonl", "csv"]),
              help="Output format (default: OUT's extension, else hf: a save_to_disk folder).")
@click.option("--force", is_flag=True, help="Replace OUT if it exists.")
@_REV
@json_option
@handle_errors
def export_cmd(path: str, out_path: str, fmt: str | None, force: bool, rev: str,
               as_json: bool) -> None:
    """Export a dataset, or a folder of split datasets, as HF, Parquet, JSONL or CSV.

    OUT is the file or folder to write. A folder of datasets (PATH/SPLIT.parquet) becomes a DatasetDict (hf) or a folder of
    SPLIT files.
    """
    repo = open_repo()
    res = D.export_data(repo, path, out_path, fmt=fmt, rev=rev, force=force)
    if as_json:
        return print_json(res.to_dict())
    out.print(f"wrote {res.out} ({res.format}): " + ", ".join(
        f"{s or 'rows'} {n}" for s, n in res.rows.items()), markup=False)


# ---- generation ---------------------------------------------------------------------------

_MODEL = click.option("--model", "-m", default="smollm2", show_default=True,
                      help="smollm2 (embedded), a model path committed in the tree, or openai:NAME.")
_SEED = click.option("--seed", type=int, default=0, show_default=True,
                     help="Seed of the example draws and of every model call.")
_REPLAY = click.option("--replay", is_flag=True,
                       help="Answer every model call from the calls recorded at REV (no model).")


def _reasons(reasons: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(reasons.items())) or "none"


@data_group.command("self-instruct")
@click.argument("seeds_path")
@click.option("--out", "-o", "out_path", required=True,
              help="Dataset of kept tasks (.jsonl, .parquet or .csv); earlier rows are kept.")
@_MODEL
@click.option("--n", "n", type=int, default=20, show_default=True, help="Model calls to make.")
@_SEED
@click.option("--column", "-c", default="instruction", show_default=True,
              help="Instruction column of the seed tasks.")
@click.option("--examples", type=int, default=3, show_default=True,
              help="Seed tasks shown in each call.")
@click.option("--threshold", type=float, default=0.7, show_default=True,
              help="Reject a task whose ROUGE-L with a kept one is at least this.")
@click.option("--max-tokens", type=int, default=128, show_default=True,
              help="Tokens per model reply.")
@_REPLAY
@_REV
@_MSG
@json_option
@handle_errors
def self_instruct_cmd(seeds_path: str, out_path: str, model: str, n: int, seed: int, column: str,
                      examples: int, threshold: float, max_tokens: int, replay: bool, rev: str,
                      message: str | None, as_json: bool) -> None:
    """Generate tasks from seed tasks with a model, filtered as self-instruct does.

    SEEDS_PATH is a committed dataset of seed tasks (an instruction column, and answers
    when it has an answer, output or response column). Rejected candidates (invalid output, too short or long, blocked keyword, ROUGE-L
    similar to a kept task) are committed with their reason in OUT.prep/rejected.parquet,
    every model call in OUT.prep/calls.parquet.
    """
    repo = open_repo()
    with Bars(not as_json) as bars:
        res = D.self_instruct(repo, seeds_path, out_path, model=model, n=n, seed=seed,
                              column=column, examples=examples, threshold=threshold,
                              max_tokens=max_tokens, replay=replay, rev=rev, message=message,
                              progress=bars)
    if as_json:
        return print_json(res.to_dict())
    if res.up_to_date:
        out.print(f"{res.path}: this run is already committed (same seeds, model and "
                  "parameters); nothing committed", markup=False)
        return
    out.print(f"[{(res.commit or '')[:10]}] data self-instruct {res.path}: {res.kept} kept, "
              f"{res.rejected} rejected of {res.calls} calls ({res.model})", markup=False)
    print_fields([("rejected", _reasons(res.reasons))])
    print_rows([{"id": r["id"], "instruction": r["instruction"], "answer": r["answer"]}
                for r in res.rows])


@data_group.command("augment")
@click.argument("path")
@click.option("--template", "-t", "templates", multiple=True,
              help="A template with {column} fields (repeatable; one drawn per new row).")
@click.option("--model", "-m", help="Rewrite with this model (smollm2, a committed path, openai:NAME).")
@click.option("--mode", type=click.Choice(["paraphrase", "roundtrip", "reformat"]),
              default="paraphrase", show_default=True, help="What the model does to the text.")
@_COLUMN
@click.option("--out", "-o", "out_path",
              help="Output dataset (default PATH_stem.augmented.ext).")
@click.option("--per-row", type=int, default=1, show_default=True,
              help="New rows per source row (templates).")
@_SEED
@click.option("--max-tokens", type=int, default=128, show_default=True,
              help="Tokens per model reply.")
@_REPLAY
@_REV
@_MSG
@json_option
@handle_errors
def augment_cmd(path: str, templates: tuple[str, ...], model: str | None, mode: str,
                column: tuple[str, ...], out_path: str | None, per_row: int, seed: int,
                max_tokens: int, replay: bool, rev: str, message: str | None,
                as_json: bool) -> None:
    """Make new rows from PATH by template or by a model, and commit them."""
    repo = open_repo()
    with Bars(not as_json) as bars:
        res = D.augment(repo, path, templates=list(templates), model=model, mode=mode,
                        column=column[0] if column else None, out=out_path, per_row=per_row,
                        seed=seed, max_tokens=max_tokens, replay=replay, rev=rev,
                        message=message, progress=bars)
    if as_json:
        return print_json(res.to_dict())
    if res.up_to_date:
        out.print(f"{res.path}: already holds these rows; nothing committed", markup=False)
        return
    out.print(f"[{(res.commit or '')[:10]}] data augment {res.source} -> {res.path}: "
              f"{res.made} rows ({res.method}), {res.rejected} rejected", markup=False)
    if res.rejected:
        print_fields([("rejected", _reasons(res.reasons))])


# ---- label --------------------------------------------------------------------------------

@data_group.command("label")
@click.argument("path")
@click.option("--column", "-c", "column", multiple=True, required=True,
              help="Column to show (repeatable); with --pairwise the two columns compared.")
@click.option("--labels", help="Labels to choose from, comma-separated, e.g. good,bad.")
@click.option("--pairwise", is_flag=True, help="Pick the better of two columns: a, b or tie.")
@click.option("--out", "-o", "out_path", help="Labels dataset (default PATH_stem.labels.jsonl).")
@click.option("--limit", "-n", type=int, help="Ask about at most this many rows.")
@_REV
@_MSG
@json_option
@handle_errors
def label_cmd(path: str, column: tuple[str, ...], labels: str | None, pairwise: bool,
              out_path: str | None, limit: int | None, rev: str, message: str | None,
              as_json: bool) -> None:
    """Label rows of PATH in the terminal and commit who labelled what, and when.

    Answer with a label or its number, s to skip a row, q to stop (what was labelled
    is committed). Rows you labelled before are not asked again.
    """
    if not pairwise and not labels:
        raise click.UsageError("give --labels a,b,... (or --pairwise)")
    repo = open_repo()

    def ask(item: D.LabelItem) -> str | None:     # with --json the dialogue is on stderr
        if item.error:
            click.echo(item.error, err=as_json)
        else:
            click.echo(f"\n[{item.index}/{item.total}] row {item.key}", err=as_json)
            for i, (col, text) in enumerate(item.texts.items()):
                tag = f"{'ab'[i]}) " if item.pairwise else ""
                click.echo(f"  {tag}{col}: {text}", err=as_json)
        choices = " / ".join(f"{i}={c}" for i, c in enumerate(item.choices, 1))
        try:
            return click.prompt(f"{choices}, s=skip, q=quit", default="q",
                                show_default=False, err=as_json)
        except click.Abort:
            return None

    res = D.label(repo, path, columns=list(column), ask=ask,
                  labels=labels.split(",") if labels else (), pairwise=pairwise, out=out_path,
                  limit=limit, rev=rev, message=message)
    if as_json:
        return print_json(res.to_dict())
    if res.commit:
        out.print(f"[{res.commit[:10]}] data label {res.path}: {len(res.labels)} labels by "
                  f"{res.labeller} in {res.out}", markup=False)
    else:
        out.print("no labels given; nothing committed", markup=False)
    if res.skipped or res.remaining:
        out.print(f"{res.skipped} skipped, {res.remaining} left", markup=False)


# ---- search -------------------------------------------------------------------------------

@data_group.command("search")
@click.argument("path")
@click.argument("query")
@click.option("--k", "-k", "k", type=int, default=5, show_default=True, help="Rows to return.")
@_COLUMN
@_REV
@json_option
@handle_errors
def search_cmd(path: str, query: str, k: int, column: tuple[str, ...], rev: str,
               as_json: bool) -> None:
    """Find the rows of PATH nearest in meaning to QUERY (LanceDB, wordllama)."""
    repo = open_repo()
    with Bars(not as_json) as bars:
        res = D.search(repo, path, query, k=k, column=list(column) or None, rev=rev,
                       progress=bars)
    if as_json:
        return print_json(res.to_dict())
    how = "built" if res.built else "reused"
    out.print(f"{res.path} @ {res.commit[:8]}: {len(res.hits)} of {res.rows} rows "
              f"(index {how})", markup=False)
    print_rows([{"key": h["key"], "similarity": f"{h['similarity']:.3f}",
                 "text": " | ".join(h["text"].splitlines())[:100]} for h in res.hits])

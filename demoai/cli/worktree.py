"""`demoai` commands on the working tree and the index: add, rm, status, diff, commit,
checkout, merge (and restore)."""
from __future__ import annotations

import json

import click

from demoai import errors as E
from demoai import porcelain as P
from demoai.cli.common import (Bars, esc, handle_errors, json_option, open_repo, out, print_json,
                               print_rows, print_stat, short)
from demoai.cli.main import main


@main.command()
@click.argument("paths", nargs=-1, required=True)
@click.option("--kind", type=click.Choice(["dataset", "prompt", "model", "adapter", "eval", "session", "agent"]))
@click.option("--key", help="Key column of a dataset (rows are matched by it in diffs and merges).")
@json_option
@handle_errors
def add(paths: tuple[str, ...], kind: str | None, key: str | None, as_json: bool) -> None:
    """Store artifacts and stage them for the next commit."""
    with Bars(not as_json) as bars:
        results = P.add(open_repo(), list(paths), kind=kind, key=key, progress=bars)
    if as_json:
        return print_json([r.to_dict() for r in results])
    for r in results:
        out.print(f"{r.status:>9}  {esc(r.path)}  [dim]{esc(r.artifact.summary())}[/dim]")


@main.command()
@click.argument("paths", nargs=-1, required=True)
@click.option("--cached", is_flag=True, help="Only unstage; keep the files.")
@handle_errors
def rm(paths: tuple[str, ...], cached: bool) -> None:
    """Remove artifacts from the next commit."""
    for p in P.rm(open_repo(), list(paths), cached=cached):
        out.print(f"removed  {p}")


@main.command()
@json_option
@handle_errors
def status(as_json: bool) -> None:
    """Show staged changes, changed files and untracked artifacts."""
    st = P.status(open_repo())
    if as_json:
        return print_json(st)
    out.print(f"On branch {st['branch']}" if st["branch"] else f"HEAD detached at {(st['head'] or '')[:12]}")
    if st.get("interrupted"):
        out.print(f"[red]Interrupted checkout:[/red] {esc(st['interrupted'])}")
    if st["merging"]:
        out.print(f"Merging {st['merging']['merge_head'][:12]}; unresolved: "
                  + (", ".join(c["path"] for c in st["merging"]["conflicts"]) or "none"))
    for title, items, colour in (("Staged for commit", st["staged"], "green"),
                                 ("Changed since staged (demoai add)", st["unstaged"], "red")):
        if items:
            out.print(f"{title}:")
            for c in items:
                out.print(f"  [{colour}]{c['change']:>9}  {esc(c['path'])}[/{colour}]")
    if st["untracked"]:
        out.print("Untracked artifacts:")
        for p in st["untracked"]:
            out.print(f"  [red]{esc(p)}[/red]")
    if not (st["staged"] or st["unstaged"] or st["untracked"]):
        out.print("nothing to commit, working tree clean")


@main.command()
@click.argument("paths", nargs=-1)
@click.option("-m", "--message", required=True, help="Commit message.")
@click.option("-o", "--only", is_flag=True,
              help="Commit only PATHS, as they are in the working tree (the default when PATHS are given).")
@click.option("--allow-empty", is_flag=True)
@handle_errors
def commit(paths: tuple[str, ...], message: str, only: bool, allow_empty: bool) -> None:
    """Record the staged artifacts as a new commit; with PATHS, only those paths.

    \b
    `demoai commit PATHS` stores PATHS as they are now and commits HEAD plus exactly those
    changes; what else is staged stays staged. Processes sharing a work tree commit paths
    side by side safely (the commit lock orders them), where `add` then `commit` would mix
    up each other's files.
    Example:
      demoai commit data/train.jsonl -m "Fix row 3"
    """
    if only and not paths:
        raise click.UsageError("--only needs the PATHS to commit")
    repo = open_repo()
    with Bars(bool(paths)) as bars:
        cid = P.commit(repo, message, paths=list(paths) if paths else None, allow_empty=allow_empty,
                       progress=bars)
    out.print(f"[{repo.current_branch() or 'detached'} {cid[:12]}] {message.splitlines()[0]}", markup=False)


@main.command()
@click.argument("a", required=False)
@click.argument("b", required=False)
@click.option("--stat", is_flag=True, help="One line per artifact.")
@click.option("--path", "paths", multiple=True, help="Limit to these paths.")
@json_option
@handle_errors
def diff(a: str | None, b: str | None, stat: bool, paths: tuple[str, ...], as_json: bool) -> None:
    """Typed diff: HEAD vs index, A vs index, or A vs B."""
    changes = P.diff(open_repo(), a, b, stat=stat, paths=list(paths) or None)
    if as_json:
        return print_json(changes)
    if stat or not changes:
        print_stat(changes)
        return
    for d in changes:
        out.print(f"[bold]{d['kind']} {esc(d['path'])}[/bold] ({d['status']})")
        if d["kind"] == "dataset":
            out.print(f"  rows: [green]+{d['added']}[/green] [red]-{d['removed']}[/red] ~{d['modified']} modified"
                      + (f" (by key {d['key']})" if d.get("key") else ""))
            if d.get("schema_changes"):
                out.print(f"  schema: {'; '.join(d['schema_changes'])}", markup=False)
            if d.get("column_changes"):
                out.print("  cells changed: " + ", ".join(f"{k}={v}" for k, v in d["column_changes"].items()))
            for kind_ in ("added", "removed"):
                if d.get("samples", {}).get(kind_):
                    out.print(f"  sample {kind_}:")
                    print_rows(d["samples"][kind_])
            for m in d.get("samples", {}).get("modified", [])[:5]:
                out.print(f"  ~ {m.get('key')}: " + "; ".join(
                    f"{c}: {short(m['before'].get(c), 30)!r} -> {short(m['after'].get(c), 30)!r}"
                    for c in m.get("changed", [])), markup=False)
        elif "text" in d:
            for line in d["text"].splitlines():
                style = "green" if line.startswith("+") else "red" if line.startswith("-") else None
                out.print(line, style=style, markup=False)
        elif "changed_share" in d:
            old, new = d["size"]
            out.print(f"  size {old:,} -> {new:,} bytes; {d['added']:,} bytes in new chunks "
                      f"({d['changed_share']:.2%})")
        else:
            out.print(f"  {json.dumps({k: v for k, v in d.items() if k not in ('path', 'kind', 'status')}, default=str)}",
                      markup=False)


@main.command()
@click.argument("target")
@click.option("-b", "create", is_flag=True, help="Create the branch first.")
@click.option("--force", is_flag=True, help="Discard uncommitted changes.")
@handle_errors
def checkout(target: str, create: bool, force: bool) -> None:
    """Switch to a branch or commit and update the working tree."""
    with Bars(True) as bars:
        res = P.checkout(open_repo(), target, create=create, force=force, progress=bars)
    out.print(f"Switched to branch {res['branch']}" if res["branch"] else f"HEAD is now at {res['commit'][:12]}")


@main.command()
@click.argument("rev", required=False)
@click.option("-m", "--message")
@click.option("--abort", is_flag=True, help="Abandon an unfinished merge.")
@json_option
@handle_errors
def merge(rev: str | None, message: str | None, abort: bool, as_json: bool) -> None:
    """Three-way merge REV into the current branch."""
    repo = open_repo()
    if abort:
        P.abort_merge(repo)
        out.print("Merge aborted")
        return
    if not rev:
        raise E.RefNotFound("merge needs a revision (or --abort)")
    res = P.merge(repo, rev, message=message)
    if as_json:
        return print_json(res)
    out.print({"up-to-date": "Already up to date.", "fast-forward": f"Fast-forward to {res['commit'][:12]}",
               "merged": f"Merged {rev}: {res['commit'][:12]}"}[res["status"]])

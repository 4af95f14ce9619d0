"""`demoai` commands on the working tree and the index: add, rm, status, diff, commit,
checkout, restore, merge. Arguments read as git reads them: what follows ``--`` is paths."""
from __future__ import annotations

import json
from typing import Any

import click

from demoai import errors as E
from demoai import porcelain as P
from demoai.cli.common import (Bars, esc, handle_errors, json_option, open_repo, out, print_json,
                               print_rows, print_stat)
from demoai.cli.main import main
# porcelain verbs new with `restore` and `merge --show-conflicts` (porcelain modules, the faces' door)
from demoai.porcelain.merge import merge_conflicts
from demoai.porcelain.restore import restore as restore_paths


@main.command()
@click.argument("paths", nargs=-1, required=True)
@click.option("--kind", type=click.Choice(list(P.KINDS)),
              help="Store PATHS as this kind (default: told by the file's name and contents).")
@click.option("--key", help="Key column of a dataset (rows are matched by it in diffs and merges).")
@json_option
@handle_errors
def add(paths: tuple[str, ...], kind: str | None, key: str | None, as_json: bool) -> None:
    """Store artifacts and stage them for the next commit.

    \b
    PATHS are files or folders (a folder that is no artifact: the artifacts under it).
    Example:
      demoai add data/train.jsonl --key id
      demoai add prompts/ models/smollm2.gguf
    """
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
    """Remove artifacts from the next commit.

    \b
    PATHS are tracked paths or folders; the files go too, unless --cached.
    Example:
      demoai rm --cached data/old.jsonl
    """
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
        m = st["merging"]
        name = f"{m['merge_ref']} ({m['merge_head'][:12]})" if m.get("merge_ref") else m["merge_head"][:12]
        unresolved = ", ".join(c["path"] for c in m["conflicts"])
        out.print(f"Merging {esc(name)}: " + (f"unresolved conflicts in {esc(unresolved)} "
                                              "(`demoai merge --show-conflicts` lists them)"
                                              if unresolved else "all conflicts resolved; "
                                              "`demoai commit` finishes the merge"))
    for title, items, colour in (
            ("Staged for commit (`demoai restore --staged PATH` unstages)", st["staged"], "green"),
            ("Changed, not staged (`demoai add PATH` stages, `demoai restore PATH` discards)",
             st["unstaged"], "red")):
        if items:
            out.print(f"{esc(title)}:")
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
@click.option("--allow-empty", is_flag=True, help="Commit even when nothing changed.")
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


class PathsAfterDashDash(click.Command):
    """A command that reads the arguments after ``--`` as paths, as git does
    (``demoai checkout -- data/train.jsonl``): they are kept in ``ctx.meta`` (see
    :func:`dashdash_paths`) and never taken for revisions."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        """Set the paths after ``--`` aside, then parse the rest as usual."""
        paths = None
        if "--" in args:
            i = args.index("--")
            args, paths = args[:i], args[i + 1:]
        ctx.meta["demoai.dashdash"] = paths
        return super().parse_args(ctx, args)


def dashdash_paths() -> list[str] | None:
    """The arguments after ``--`` of the running command (None when there was no ``--``)."""
    return click.get_current_context().meta.get("demoai.dashdash")


def value(v: Any, n: int = 40) -> str:
    """A cell value in a sentence: JSON (strings quoted, ``null``), cut to ``n`` characters."""
    text = json.dumps(v, ensure_ascii=False, default=str)
    return text if len(text) <= n else text[: n - 1] + "…"


def key_label(key: str | None, v: Any) -> str:
    """How a row is named: ``key=value`` (``id=5``, ``name="ada"``)."""
    return f"{key}={value(v)}" if key else "row"


def _more(shown: int, total: int, what: str) -> None:
    if total > shown:
        out.print(f"  … and {total - shown:,} more {what}", markup=False)


def print_dataset_diff(d: dict[str, Any], modified_sample: int = 5) -> None:
    """The rows part of a dataset diff: counts, schema and cell changes, sampled rows
    (modified ones as ``key=value: column: before -> after``), and how many were left out."""
    key = d.get("key")
    out.print(f"  rows: [green]+{d['added']}[/green] [red]-{d['removed']}[/red] ~{d['modified']} modified"
              + (f" (rows matched by key {esc(key)})" if key else ""))
    if d.get("reordered"):
        out.print("  the same rows, in another order", markup=False)
    if d.get("note"):
        out.print(f"  {d['note']}", markup=False)
    if d.get("schema_changes"):
        out.print(f"  schema: {'; '.join(d['schema_changes'])}", markup=False)
    if d.get("column_changes"):
        out.print("  cells changed: " + ", ".join(f"{k} ({v})" for k, v in d["column_changes"].items()),
                  markup=False)
    samples = d.get("samples", {})
    mods = samples.get("modified", [])[:modified_sample]
    for m in mods:
        label = key_label(key, m.get("key")) if key else "row"
        out.print(f"  ~ {label}: " + "; ".join(
            f"{c}: {value(m['before'].get(c), 30)} -> {value(m['after'].get(c), 30)}"
            for c in m.get("changed", [])), markup=False)
    _more(len(mods), d["modified"], "modified rows")
    for kind_, total in (("added", d["added"]), ("removed", d["removed"])):
        rows = samples.get(kind_) or []
        if rows:
            out.print(f"  {kind_} rows:")
            print_rows(rows)
            _more(len(rows), total, f"{kind_} rows")


def print_diff(changes: list[dict[str, Any]]) -> None:
    """Typed diffs as the terminal shows them (``demoai diff``)."""
    for d in changes:
        out.print(f"[bold]{d['kind']} {esc(d['path'])}[/bold] ({d['status']})")
        if d["kind"] == "dataset":
            print_dataset_diff(d)
        elif "text" in d:
            for line in d["text"].splitlines():
                style = "green" if line.startswith("+") else "red" if line.startswith("-") else None
                out.print(line, style=style, markup=False)
        elif d["kind"] == "eval" and "metrics" in d:
            from demoai.cli.eval import print_eval_diff
            print_eval_diff(d)
        elif "changed_share" in d:
            old, new = d["size"]
            out.print(f"  size {old:,} -> {new:,} bytes; {d['added']:,} bytes in new chunks "
                      f"({d['changed_share']:.2%})")
        else:
            rest = {k: v for k, v in d.items() if k not in ("path", "kind", "status")}
            out.print("  " + ", ".join(f"{k} {value(v, 60)}" for k, v in rest.items()), markup=False)


@main.command(cls=PathsAfterDashDash)
@click.argument("revs", nargs=-1, metavar="[A] [B]")
@click.option("--staged", "--cached", "staged", is_flag=True,
              help="The index against HEAD (or A): what the next commit records.")
@click.option("--stat", is_flag=True, help="One line per artifact.")
@click.option("--path", "paths", multiple=True, help="Limit to these paths (or give them after --).")
@json_option
@handle_errors
def diff(revs: tuple[str, ...], staged: bool, stat: bool, paths: tuple[str, ...], as_json: bool) -> None:
    """Typed diff, as git reads its arguments.

    \b
    With no revision: the working tree vs the index; with A: the working tree vs A
    (--staged: the index vs HEAD, or A); A B: two commits. Datasets show rows added,
    removed and modified (by key) with samples; prompts a text diff; models the share
    of changed chunks.
    Example:
      demoai diff                 working tree vs index (changes not added yet)
      demoai diff --staged        index vs HEAD (what the next commit records)
      demoai diff main~1 main     two commits (also main~1..main)
      demoai diff -- data/        only these paths
    """
    if len(revs) == 1 and ".." in revs[0]:
        revs = tuple(revs[0].split("..", 1))
    if len(revs) > 2:
        raise click.UsageError("diff takes at most two revisions (paths go after --)")
    a, b = (list(revs) + [None, None])[:2]
    repo = open_repo()
    limit = [*paths, *(dashdash_paths() or [])]
    changes = P.diff(repo, a or None, b or None, staged=staged, stat=stat, paths=limit or None)
    if as_json:
        return print_json(changes)
    if stat or not changes:
        print_stat(changes)
        return
    print_diff(changes)


@main.command(cls=PathsAfterDashDash)
@click.argument("args", nargs=-1, metavar="[REF] [-- PATHS...]")
@click.option("-b", "create", is_flag=True, help="Create the branch REF at HEAD first.")
@click.option("-f", "--force", is_flag=True, help="Discard uncommitted changes.")
@handle_errors
def checkout(args: tuple[str, ...], create: bool, force: bool) -> None:
    """Switch to a branch or commit and update the working tree; or restore paths.

    \b
    REF is a branch or a commit; PATHS (after --) are restored from REF, or from the
    index without one, instead of switching.
    Example:
      demoai checkout main                    switch (refused over uncommitted changes)
      demoai checkout -b experiment           create a branch at HEAD and switch to it
      demoai checkout -- data/train.jsonl     undo its changes (from the index)
      demoai checkout v1 -- data/train.jsonl  take v1's version (index and file)
    """
    paths = dashdash_paths()
    repo = open_repo()
    if paths is not None or (len(args) > 1 and not create):
        if create:
            raise click.UsageError("-b creates a branch; it takes no paths")
        if paths is None:              # git: `checkout REF PATH...`
            args, paths = args[:1], list(args[1:])
        if len(args) > 1:
            raise click.UsageError("checkout [REF] -- PATHS: one revision at most before --")
        if not paths:
            raise click.UsageError("checkout -- needs the paths to restore")
        with Bars(True) as bars:
            res = P.checkout(repo, args[0] if args else None, paths=paths, progress=bars)
    else:
        if len(args) != 1:
            raise click.UsageError("checkout needs a branch or a commit (or -- PATHS)")
        with Bars(True) as bars:
            res = P.checkout(repo, args[0], create=create, force=force, progress=bars)
    if res.get("paths") is not None:
        n = len(res["paths"])
        src = "the index" if res["source"] == "index" else res["source"]
        out.print(f"Updated {n} path{'s' if n != 1 else ''} from {src}", markup=False)
        return
    out.print(f"Switched to branch {res['branch']}" if res["branch"] else f"HEAD is now at {res['commit'][:12]}")


@main.command(cls=PathsAfterDashDash)
@click.argument("paths", nargs=-1)
@click.option("-S", "--staged", is_flag=True, help="Restore the index (from HEAD, or --source).")
@click.option("-W", "--worktree", is_flag=True,
              help="Restore the working files (from the index, or --source); the default.")
@click.option("-s", "--source", metavar="REF", help="Take the paths from REF.")
@json_option
@handle_errors
def restore(paths: tuple[str, ...], staged: bool, worktree: bool, source: str | None,
            as_json: bool) -> None:
    """Restore paths in the working tree or the index, as git restore does.

    \b
    PATHS are tracked paths or folders. Files are written and verified first, then put
    in place all together.
    Example:
      demoai restore data/train.jsonl            discard what was not added
      demoai restore --staged data/train.jsonl   unstage it (the file stays as it is)
      demoai restore -S -W data/train.jsonl      both, back to HEAD
      demoai restore --source v1 data/train.jsonl  v1's version in the working tree
    """
    given = [*paths, *(dashdash_paths() or [])]
    if not given:
        raise click.UsageError("restore needs the paths to restore")
    with Bars(not as_json) as bars:
        res = restore_paths(open_repo(), given, staged=staged, worktree=worktree or None,
                        source=source, progress=bars)
    if as_json:
        return print_json(res.to_dict())
    src = "the index" if res.source == "index" else res.source
    where = " and ".join(w for w, on in (("index", res.staged), ("working tree", res.worktree)) if on)
    for p in res.paths:
        out.print(f"restored  {esc(p)}  [dim]({where} from {esc(src)})[/dim]")


def print_conflicts(conflicts: list[dict[str, Any]]) -> None:
    """Each conflicting path with why, and each conflicting row of a dataset by
    ``key=value`` with its base, our and their values (``… and N more`` when cut)."""
    for c in conflicts:
        kind = c.get("kind")
        where = ("; the file marks it (<<<<<<< / ======= / >>>>>>>)" if c.get("markers")
                 else "; the file keeps our version" if kind == "dataset" else "")
        out.print(f"[red]CONFLICT[/red]{f' ({kind})' if kind else ''}: {esc(c['path'])}: "
                  f"{esc(c['reason'])}{esc(where)}")
        rows = c.get("rows") or []
        key = c.get("key_column")
        for r in rows:
            label = key_label(key, r.get("key")) if key else "row"
            if r.get("column"):
                out.print(f"    {label}  {r['column']}: base {value(r.get('base'))} | "
                          f"ours {value(r.get('ours'))} | theirs {value(r.get('theirs'))}", markup=False)
            else:
                def side(v: Any) -> str:
                    return "(deleted)" if v is None else value(v, 60)
                out.print(f"    {label}  {r.get('reason') or 'whole row'}: ours {side(r.get('ours'))} | "
                          f"theirs {side(r.get('theirs'))}", markup=False)
        _more(len(rows), int(c.get("count") or len(rows)), "conflicting rows")


@main.command()
@click.argument("rev", required=False)
@click.option("-m", "--message", help="The merge commit's message (default: Merge REV into BRANCH).")
@click.option("--abort", is_flag=True, help="Abandon an unfinished merge.")
@click.option("--show-conflicts", is_flag=True, help="List the unresolved conflicts of the merge in progress.")
@json_option
@handle_errors
def merge(rev: str | None, message: str | None, abort: bool, show_conflicts: bool, as_json: bool) -> None:
    """Three-way merge REV into the current branch.

    \b
    Datasets merge row by row (cell by cell with a key), prompts as text. A conflicting
    JSONL/CSV row is written into the file as a git conflict block (our row, then theirs);
    `demoai add` refuses the file until each block is resolved. Then `demoai commit`.
    Example:
      demoai merge experiment
      demoai merge --show-conflicts      what is still unresolved
      demoai merge --abort               back to where the merge started
    """
    repo = open_repo()
    if abort:
        P.abort_merge(repo)
        out.print("Merge aborted")
        return
    if show_conflicts:
        state = merge_conflicts(repo)
        if as_json:
            return print_json(state)
        name = state.get("merge_ref") or (state.get("merge_head") or "")[:12]
        if not state["conflicts"]:
            out.print(f"Merging {name}: every conflict is resolved; `demoai commit` finishes the merge",
                      markup=False)
            return
        out.print(f"Merging {name}: {len(state['conflicts'])} path(s) still conflict", markup=False)
        print_conflicts(state["conflicts"])
        return
    if not rev:
        raise E.RefNotFound("merge needs a revision (or --abort, --show-conflicts)")
    try:
        res = P.merge(repo, rev, message=message)
    except E.MergeConflict as e:
        conflicts = getattr(e, "conflicts", [])
        if as_json:
            print_json({"status": "conflicts", "commit": None, "conflicts": conflicts})
        else:
            print_conflicts(conflicts)
        # the conflicts are listed: the error itself is one line (and the hint, once)
        raise E.MergeConflict(e.message) from None
    if as_json:
        return print_json(res)
    out.print({"up-to-date": "Already up to date.", "fast-forward": f"Fast-forward to {res['commit'][:12]}",
               "merged": f"Merged {rev}: {res['commit'][:12]}"}[res["status"]])

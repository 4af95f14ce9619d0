"""`demoai` commands on the repository as a whole: init, query, export, fsck, repair, gc, demo."""
from __future__ import annotations

import sys
from typing import Any

import click

from demoai import porcelain as P
from demoai.cli.common import (Bars, esc, handle_errors, json_option, open_repo, out, print_json,
                               print_rows)
from demoai.cli.main import main


@main.command()
@click.argument("path", default=".")
@click.option("--branch", "-b", default="main", help="Name of the first branch.")
@handle_errors
def init(path: str, branch: str) -> None:
    """Create an empty repository."""
    repo = P.init(path, branch=branch)
    out.print(f"Initialized empty DemoAI repository in {repo.control}")
    out.print(f"  git history: git --git-dir {repo.control / 'git'} log --graph", style="dim")


@main.command()
@click.argument("sql")
@click.option("--limit", type=int, default=50, help="Rows printed (tables only).")
@json_option
@handle_errors
def query(sql: str, limit: int, as_json: bool) -> None:
    """DuckDB SQL over table('PATH', 'REV') and the commits table."""
    t = P.query(open_repo(), sql)
    if as_json:
        return print_json(t.to_pylist())
    print_rows(t.slice(0, limit).to_pylist())
    out.print(f"[dim]{t.num_rows} row(s)[/dim]")


@main.command()
@click.argument("spec")
@click.argument("dest")
@json_option
@handle_errors
def export(spec: str, dest: str, as_json: bool) -> None:
    """Write PATH[@REF] to DEST (datasets in DEST's format)."""
    res = P.export(open_repo(), spec, dest)
    if as_json:
        return print_json(res)
    out.print(f"Exported {res['path']}@{res['ref']} ({res['kind']}) to {res['out']}")


@main.command()
@click.option("--repair", "do_repair", is_flag=True,
              help="Then repair what can be: see `demoai repair`.")
@click.option("--remote", help="With --repair: the remote to take damaged objects from (default: origin).")
@json_option
@handle_errors
def fsck(do_repair: bool, remote: str | None, as_json: bool) -> None:
    """Verify every object, chunk and table file.

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
        c = res["counts"]
        out.print(f"checked {c['git_objects']} git objects, {c['commits']} commits, {c['manifests']} manifests, "
                  f"{c['chunks']} chunks, {c['table_versions']} table versions")
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
    """Delete chunks and table versions nothing reaches."""
    res = P.gc(open_repo())
    if as_json:
        return print_json(res)
    out.print(f"chunks: {res['chunks']}\ntables: {res['tables']}", markup=False)


@main.command()
@click.option("--dir", "workdir", default=None, help="Where to build the demo repository.")
@handle_errors
def demo(workdir: str | None) -> None:
    """Run the main job end to end on the embedded sample data and model."""
    from demoai.cli.demo import run_demo
    run_demo(workdir, out.get())

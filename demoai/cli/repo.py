"""The ``demoai`` command line: parse, call one porcelain function, print.

Errors are typed ``DemoAIError``s turned into one line by ``demoai.cli.common.ERROR_HINTS`` (exit 1);
``DEMOAI_DEBUG=1`` shows the traceback instead.
"""
from __future__ import annotations

import json
import sys
from datetime import datetime
from typing import Any

import click

import demoai
from demoai import errors as E
from demoai import porcelain as P
from demoai.cli.common import Bars, esc, handle_errors, json_option, open_repo, out, print_json



@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(demoai.__version__, prog_name="demoai")
def main() -> None:
    """DemoAI: git for the AI workflow (datasets, prompts, models, adapters, evals, agents)."""


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
@click.argument("rev", default="HEAD")
@click.option("--graph", is_flag=True, help="Draw the commit graph.")
@click.option("--oneline", is_flag=True)
@click.option("-n", "limit", type=int, help="Show at most N commits.")
@click.option("--all", "all_refs", is_flag=True, help="Start from every branch and tag.")
@json_option
@handle_errors
def log(rev: str, graph: bool, oneline: bool, limit: int | None, all_refs: bool, as_json: bool) -> None:
    """Show the history."""
    repo = open_repo()
    entries = P.log(repo, rev, limit=limit, all_refs=all_refs)
    if as_json:
        return print_json(entries)
    by_id = {e["id"]: e for e in entries}
    rows = (P.graph_lines([repo.commit_info(e["id"]) for e in entries]) if graph
            else [("", repo.commit_info(e["id"])) for e in entries])
    for prefix, ci in rows:
        lead = f"{prefix} " if prefix else ""
        if ci is None:
            out.print(lead, markup=False)
            continue
        e = by_id[ci.id]
        refs = f" [yellow]({esc(', '.join(e['refs']))})[/yellow]" if e["refs"] else ""
        if oneline:
            out.print(f"{esc(lead)}[yellow]{ci.id[:12]}[/yellow]{refs} {esc(ci.summary)}")
            continue
        when = datetime.fromtimestamp(ci.time).strftime("%Y-%m-%d %H:%M:%S")
        out.print(f"{esc(lead)}[yellow]commit {ci.id}[/yellow]{refs}")
        pad = "| " * len(prefix.split()) if graph else ""
        if len(ci.parents) > 1:
            out.print(f"{pad}Merge: {' '.join(p[:12] for p in ci.parents)}", markup=False)
        out.print(f"{pad}Author: {ci.author}\n{pad}Date:   {when}", markup=False)
        if e.get("command"):
            out.print(f"{pad}Command: {e['command']}", style="dim", markup=False)
        out.print(f"{pad}\n{pad}    {ci.summary}\n{pad}", markup=False)


@main.command()
@click.argument("spec", default="HEAD")
@json_option
@handle_errors
def show(spec: str, as_json: bool) -> None:
    """Show a commit (REF) or an artifact (REF:PATH)."""
    data = P.show(open_repo(), spec)
    if as_json:
        return print_json(data)
    if "path" in data:
        out.print(f"[bold]{esc(data['path'])}[/bold] @ {esc(data['ref'])}  {esc(data['summary'])}\n  digest {data['digest']}")
        if "text" in data:
            out.print(data["text"], markup=False)
        if "preview" in data:
            _print_rows(data["preview"])
        for p, f in data.get("files", {}).items():
            out.print(f"  {p}  {f['size']:,} bytes  {f['chunks']} chunks  {f['digest'][:23]}", markup=False)
        return
    out.print(f"[yellow]commit {data['id']}[/yellow]\nAuthor: {esc(data['author'])}\n"
              f"Date:   {datetime.fromtimestamp(data['time'])}\n\n    {esc(data['message'].strip())}\n")
    lin = data.get("lineage") or {}
    if lin:
        env = lin.get("environment", {})
        out.print(f"Lineage: {lin.get('command')}\n  demoai {env.get('demoai')}, Python {env.get('python')}, "
                  f"{env.get('host', {}).get('cpu')} x{env.get('host', {}).get('cpus')}", markup=False)
    _print_stat(data["changes"])


def _print_rows(rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    from rich.table import Table

    t = Table(*rows[0].keys(), show_lines=False)
    for r in rows:
        t.add_row(*(esc(_short(v)) for v in r.values()))
    out.print(t)


def _short(v: Any, n: int = 60) -> str:
    s = str(v)
    return s if len(s) <= n else s[: n - 1] + "…"


def _print_stat(changes: list[dict[str, Any]]) -> None:
    for d in changes:
        unit = "bytes" if d["kind"] in ("model", "adapter") else "lines" if d["kind"] in ("prompt", "agent") else "rows"
        mod = f" ~{d['modified']}" if d.get("modified") else ""
        out.print(f" {d['status']:>8} {d['kind']:<8} {esc(d['path'])}  [green]+{d['added']}[/green] "
                  f"[red]-{d['removed']}[/red]{mod} {unit}")


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
        _print_stat(changes)
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
                    _print_rows(d["samples"][kind_])
            for m in d.get("samples", {}).get("modified", [])[:5]:
                out.print(f"  ~ {m.get('key')}: " + "; ".join(
                    f"{c}: {_short(m['before'].get(c), 30)!r} -> {_short(m['after'].get(c), 30)!r}"
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
@click.argument("name", required=False)
@click.argument("start", default="HEAD")
@click.option("-d", "--delete", is_flag=True)
@json_option
@handle_errors
def branch(name: str | None, start: str, delete: bool, as_json: bool) -> None:
    """List branches, create NAME at START, or delete NAME."""
    repo = open_repo()
    if name is None:
        items = P.list_branches(repo)
        if as_json:
            return print_json(items)
        for b in items:
            out.print(f"{'*' if b['current'] else ' '} {esc(b['name'])}  [dim]{b['commit'][:12]}[/dim]")
        return
    if delete:
        P.delete_branch(repo, name)
        out.print(f"Deleted branch {name}")
    else:
        cid = P.branch(repo, name, start)
        out.print(f"Created branch {name} at {cid[:12]}")


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
@click.argument("name", required=False)
@click.argument("rev", default="HEAD")
@click.option("-m", "--message", help="Annotated tag message.")
@click.option("-d", "--delete", is_flag=True)
@json_option
@handle_errors
def tag(name: str | None, rev: str, message: str | None, delete: bool, as_json: bool) -> None:
    """List tags, tag REV as NAME, or delete NAME."""
    repo = open_repo()
    if name is None:
        items = P.list_tags(repo)
        if as_json:
            return print_json(items)
        for t in items:
            out.print(f"{esc(t['name'])}  [dim]{t['commit'][:12]}[/dim]")
        return
    if delete:
        P.delete_tag(repo, name)
        out.print(f"Deleted tag {name}")
    else:
        cid = P.tag(repo, name, rev, message)
        out.print(f"Tagged {cid[:12]} as {name}")


@main.command()
@click.argument("rev")
@click.argument("name", required=False)
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Session forks: change a setting (instruction, system, temperature, seed, max_steps...).")
@click.option("--model", help="Session forks: continue with this model (a path in the tree).")
@click.option("--prompt", help="Session forks: continue with this Prompt as the system prompt.")
@handle_errors
def fork(rev: str, name: str | None, sets: tuple[str, ...], model: str | None, prompt: str | None) -> None:
    """Start a new branch NAME from any commit REV, or fork an agent session at a step
    (REV = SESSION@STEP) into a new session sharing its history."""
    import re
    if re.fullmatch(r".+@\d+", rev):
        from demoai.cli.agent import fork_session_cmd
        return fork_session_cmd(rev, name, sets, model, prompt)
    if not name:
        raise E.InvalidRefName("fork REV NAME: the new branch needs a NAME")
    if sets or model or prompt:
        raise E.UnsupportedOperation("--set/--model/--prompt apply to session forks (SESSION@STEP)")
    cid = P.fork(open_repo(), rev, name)
    out.print(f"Forked {rev} ({cid[:12]}) as branch {name}; `demoai checkout {name}` to work on it")


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
    _print_rows(t.slice(0, limit).to_pylist())
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


def _register_agent() -> None:
    from demoai.cli.agent import agent
    main.add_command(agent)
    from demoai.cli.remote import clone, fetch, login, pull, push, remote
    for cmd in (remote, push, fetch, pull, clone, login):
        main.add_command(cmd)
    from demoai.cli.hub import hub
    main.add_command(hub)
    from demoai.cli.serve import serve
    main.add_command(serve)


_register_agent()

if __name__ == "__main__":
    main()

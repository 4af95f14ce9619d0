"""`demoai` commands on history and refs: log, show, branch, tag, fork."""
from __future__ import annotations

from datetime import datetime

import click

from demoai import errors as E
from demoai import porcelain as P
from demoai.cli.common import (esc, handle_errors, json_option, open_repo, out, print_json,
                               print_rows, print_stat)
from demoai.cli.main import main


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
            print_rows(data["preview"])
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
    print_stat(data["changes"])








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

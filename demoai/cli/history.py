"""`demoai` commands on history and refs: log, show, branch, tag, fork."""
from __future__ import annotations

from datetime import datetime

import click

from demoai import errors as E
from demoai import porcelain as P
from demoai.cli.common import (esc, handle_errors, human_bytes, json_option, open_repo, out,
                               print_fields, print_json, print_rows, print_stat)
from demoai.cli.main import main


@main.command()
@click.argument("rev", default="HEAD")
@click.option("--graph", is_flag=True, help="Draw the commit graph.")
@click.option("--oneline", is_flag=True, help="One line per commit: short id, refs, summary.")
@click.option("-n", "limit", type=click.IntRange(min=0), metavar="N", help="Show at most N commits.")
@click.option("--all", "all_refs", is_flag=True, help="Start from every branch and tag, not only REV.")
@json_option
@handle_errors
def log(rev: str, graph: bool, oneline: bool, limit: int | None, all_refs: bool, as_json: bool) -> None:
    """Show the history reachable from REV (default: HEAD), newest first.

    \b
    Each commit with its author, date, the command that made it (lineage) and message;
    children always come before their parents.
    Example:
      demoai log --oneline -n 5
      demoai log --graph --oneline --all
      demoai log v1 --json
    """
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
@click.argument("spec", metavar="REF[:PATH]", default="HEAD")
@json_option
@handle_errors
def show(spec: str, as_json: bool) -> None:
    """Show a commit (REF, default HEAD) or one artifact in it (REF:PATH).

    \b
    A commit: author, date, message, lineage (command, versions, host) and one line per
    changed artifact. An artifact: its kind, digest and a preview (a dataset's first rows,
    a prompt's text, a model's files).
    Example:
      demoai show
      demoai show main~1
      demoai show v1:data/train.jsonl
    """
    data = P.show(open_repo(), spec)
    if as_json:
        return print_json(data)
    if "path" in data:
        _show_artifact(data)
        return
    when = datetime.fromtimestamp(data["time"]).strftime("%Y-%m-%d %H:%M:%S")
    out.print(f"[yellow]commit {data['id']}[/yellow]\nAuthor: {esc(data['author'])}\n"
              f"Date:   {when}\n\n    {esc(data['message'].strip())}\n")
    lin = data.get("lineage") or {}
    if lin.get("command"):
        out.print(f"Lineage: {lin['command']}", markup=False)
    env = lin.get("environment") or {}
    host = env.get("host") or {}
    made_with = [f"demoai {env['demoai']}" if env.get("demoai") else "",
                 f"Python {env['python']}" if env.get("python") else "",
                 " x".join(str(x) for x in (host.get("cpu"), host.get("cpus")) if x)]
    if any(made_with):
        out.print("  " + ", ".join(m for m in made_with if m), markup=False)
    print_stat(data["changes"])


def _show_artifact(data: dict) -> None:
    out.print(f"[bold]{esc(data['path'])}[/bold] @ {esc(data['ref'])}  {esc(data['summary'])}\n"
              f"  digest {data['digest']}")
    if "text" in data:
        out.print(data["text"], markup=False)
    if "preview" in data:
        print_rows(data["preview"])
    for p, f in data.get("files", {}).items():
        out.print(f"  {p}  {human_bytes(f['size'])}  {f['chunks']} chunk(s)  {f['digest'][:23]}", markup=False)
    if not ({"text", "preview", "files"} & data.keys()):
        manifest = data.get("manifest") or {}
        print_fields([(k, v) for k, v in manifest.items() if k not in ("kind",)], indent="  ")


@main.command()
@click.argument("name", required=False)
@click.argument("start", default="HEAD")
@click.option("-d", "--delete", is_flag=True, help="Delete branch NAME (never the checked-out one).")
@json_option
@handle_errors
def branch(name: str | None, start: str, delete: bool, as_json: bool) -> None:
    """List branches, create NAME at START (default HEAD), or delete NAME.

    \b
    Creating a branch does not switch to it: `demoai checkout NAME` (or `checkout -b`).
    Example:
      demoai branch
      demoai branch experiment
      demoai branch hotfix v1
      demoai branch -d experiment
    """
    repo = open_repo()
    if name is None:
        items = P.list_branches(repo)
        if as_json:
            return print_json(items)
        for b in items:
            out.print(f"{'*' if b['current'] else ' '} {esc(b['name'])}  [dim]{b['commit'][:12]}[/dim]")
        return
    if delete:
        old = P.delete_branch(repo, name)
        if as_json:
            return print_json({"deleted": name, "commit": old})
        out.print(f"Deleted branch {name} (was {old[:12]})", markup=False)
    else:
        cid = P.branch(repo, name, start)
        if as_json:
            return print_json({"created": name, "commit": cid})
        out.print(f"Created branch {name} at {cid[:12]}", markup=False)


@main.command()
@click.argument("name", required=False)
@click.argument("rev", default="HEAD")
@click.option("-m", "--message", help="Make an annotated tag (a git tag object) with this message.")
@click.option("-d", "--delete", is_flag=True, help="Delete tag NAME.")
@json_option
@handle_errors
def tag(name: str | None, rev: str, message: str | None, delete: bool, as_json: bool) -> None:
    """List tags, tag REV (default HEAD) as NAME, or delete NAME.

    \b
    Example:
      demoai tag
      demoai tag v1 -m "First cleaned dataset"
      demoai tag baseline main~3
      demoai tag -d baseline
    """
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
        if as_json:
            return print_json({"deleted": name})
        out.print(f"Deleted tag {name}", markup=False)
    else:
        cid = P.tag(repo, name, rev, message)
        if as_json:
            return print_json({"created": name, "commit": cid})
        out.print(f"Tagged {cid[:12]} as {name}", markup=False)


@main.command()
@click.argument("rev")
@click.argument("name", required=False)
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Session forks: change a setting (instruction, system, temperature, seed, max_steps...).")
@click.option("--model", help="Session forks: continue with this model (a path in the tree).")
@click.option("--prompt", help="Session forks: continue with this Prompt as the system prompt.")
@handle_errors
def fork(rev: str, name: str | None, sets: tuple[str, ...], model: str | None, prompt: str | None) -> None:
    """Branch NAME off any commit REV, or fork agent session REV=SESSION@STEP.

    \b
    A commit fork is a new branch sharing the history before REV. A session fork is a
    new session (NAME, or a derived one) sharing SESSION's first STEP steps; --set,
    --model and --prompt change how it continues (`demoai agent run --from NAME`).
    Example:
      demoai fork main~3 old-baseline
      demoai fork demo-run@2 --set instruction="Write bye.txt instead" --set temperature=0.5
    """
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

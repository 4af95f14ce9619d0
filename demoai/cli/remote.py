"""``demoai remote|push|fetch|pull|clone|login``: parse, call the porcelain, print."""
from __future__ import annotations

from typing import Any

import click

from demoai.cli.common import (Bars, err, esc, handle_errors, human_bytes, json_option, open_repo,
                               out, print_json)

__all__ = ["remote", "push", "fetch", "pull", "clone", "login"]


def _stats_line(stats: dict[str, Any]) -> str:
    if not stats:
        return "nothing to transfer"
    return (f"{stats.get('git_sent', 0)} objects, {stats.get('chunks_sent', 0)} chunks, "
            f"{stats.get('files_sent', 0)} table files; {human_bytes(stats.get('bytes_sent', 0))} sent, "
            f"{human_bytes(stats.get('bytes_received', 0))} received")


@click.group()
def remote() -> None:
    """Add, remove and list named hub repository URLs (remotes).

    \b
    Example:
      demoai remote add origin http://127.0.0.1:8765/alice/qa
      demoai remote list
    """


@remote.command("add")
@click.argument("name")
@click.argument("url")
@handle_errors
def remote_add(name: str, url: str) -> None:
    """Remember URL (http://HOST:PORT/OWNER/NAME) as remote NAME."""
    from demoai.porcelain import remote_add as add
    add(open_repo(), name, url)
    out.print(f"Added remote {name}: {url}", markup=False)


@remote.command("remove")
@click.argument("name")
@handle_errors
def remote_remove(name: str) -> None:
    """Forget remote NAME and its remote-tracking branches."""
    from demoai.porcelain import remote_remove as rm
    rm(open_repo(), name)
    out.print(f"Removed remote {name}", markup=False)


@remote.command("list")
@json_option
@handle_errors
def remote_list(as_json: bool) -> None:
    """List the remotes and their URLs."""
    from demoai.porcelain import remotes
    r = remotes(open_repo())
    if as_json:
        return print_json(r)
    for name, url in sorted(r.items()):
        out.print(f"{name}\t{url}", markup=False)


@click.command()
@click.argument("remote_name", metavar="[REMOTE]", default="origin")
@click.argument("refs", nargs=-1)
@click.option("--all", "all_refs", is_flag=True, help="Every branch, tag and session.")
@click.option("--force", "-f", is_flag=True, help="Move the hub's refs even if it loses commits.")
@click.option("--public", is_flag=True, help="Create the hub repository as public (default: private).")
@json_option
@handle_errors
def push(remote_name: str, refs: tuple[str, ...], all_refs: bool, force: bool, public: bool,
         as_json: bool) -> None:
    """Send REFS (branches, tags, session:NAME) to REMOTE; only what it lacks travels.

    \b
    REMOTE defaults to origin, REFS to the current branch. The hub repository is
    created on first push (private unless --public). A push that would drop the hub's
    commits is refused unless --force.
    Example:
      demoai push
      demoai push origin main v1 session:demo-run
      demoai push --all --public
    """
    from demoai.porcelain import push as do_push
    with Bars(not as_json) as bars:
        res = do_push(open_repo(), remote_name, list(refs) or None, all_refs=all_refs, force=force,
                      private=not public, progress=bars)
    if as_json:
        return print_json(res)
    if res["created"]:
        out.print(f"created {esc(res['url'])} ({'public' if public else 'private'})")
    for u in res["updated"]:
        old = (u["old"] or "new")[:12]
        out.print(f"  {old} -> {u['new'][:12]}  {esc(u['ref'])}")
    if not res["updated"]:
        out.print("everything up to date")
    out.print(f"[dim]{_stats_line(res['stats'])}[/dim]")


def _print_fetch(res: dict[str, Any]) -> None:
    for u in res["updated"]:
        out.print(f"  {(u['old'] or 'new')[:12]} -> {u['new'][:12]}  {esc(u['ref'])}")
    for k in res["kept"]:
        err.print(f"  [yellow]kept[/yellow] {esc(k['ref'])}: {esc(k['reason'])}")
    out.print(f"[dim]{_stats_line(res['stats'])}[/dim]")


@click.command()
@click.argument("remote_name", metavar="[REMOTE]", default="origin")
@json_option
@handle_errors
def fetch(remote_name: str, as_json: bool) -> None:
    """Bring REMOTE's branches (as REMOTE/BRANCH), tags and sessions here.

    \b
    REMOTE defaults to origin. Your branches do not move; a tag or session that
    diverged from the hub's is kept as yours (and listed).
    Example:
      demoai fetch
      demoai merge origin/main
    """
    from demoai.porcelain import fetch as do_fetch
    with Bars(not as_json) as bars:
        res = do_fetch(open_repo(), remote_name, progress=bars)
    if as_json:
        return print_json(res)
    _print_fetch(res)


@click.command()
@click.argument("remote_name", metavar="[REMOTE]", default="origin")
@json_option
@handle_errors
def pull(remote_name: str, as_json: bool) -> None:
    """Fetch from REMOTE, then merge its counterpart of the current branch.

    \b
    REMOTE defaults to origin.
    Example:
      demoai pull
      demoai pull upstream
    """
    from demoai.porcelain import pull as do_pull
    with Bars(not as_json) as bars:
        res = do_pull(open_repo(), remote_name, progress=bars)
    if as_json:
        return print_json(res)
    _print_fetch(res["fetch"])
    m = res["merge"]
    status = "fast-forward" if m.get("fast_forward") else m.get("status")
    commit = (m.get("commit") or "")[:12]
    out.print({"up-to-date": "Already up to date.",
               "fast-forward": f"Fast-forward{' to ' + commit if commit else ''}",
               "merged": f"Merged: {commit}"}.get(status or "", f"merge: {status}"), markup=False)


@click.command()
@click.argument("url")
@click.argument("directory", required=False)
@click.option("--no-checkout", is_flag=True, help="Fetch only; leave the working tree empty.")
@json_option
@handle_errors
def clone(url: str, directory: str | None, no_checkout: bool, as_json: bool) -> None:
    """Copy the hub repository at URL into DIRECTORY (default: its name).

    \b
    URL is http://HOST:PORT/OWNER/NAME; DIRECTORY must be new or empty. The clone has
    the hub as remote origin and its default branch checked out.
    Example:
      demoai clone http://127.0.0.1:8765/alice/qa
      demoai clone http://127.0.0.1:8765/alice/qa qa-copy --no-checkout
    """
    from demoai.porcelain import clone as do_clone
    with Bars(not as_json) as bars:
        res = do_clone(url, directory, checkout=not no_checkout, progress=bars)
    if as_json:
        return print_json(res)
    out.print(f"cloned into {esc(res['path'])}"
              + (f" (branch {esc(res['branch'])} at {res['commit'][:12]})" if res["commit"] else " (empty)"))
    out.print(f"[dim]{_stats_line(res['fetch']['stats'])}[/dim]")


@click.command()
@click.argument("url")
@click.option("--token", prompt=True, hide_input=True, help="A token from `demoai hub token create`.")
@handle_errors
def login(url: str, token: str) -> None:
    """Check a token against the hub at URL and save it for that hub.

    \b
    The token (`demoai hub token create` on the hub) is asked for when --token is not
    given; it is saved in ~/.config/demoai/credentials.json.
    Example:
      demoai login http://127.0.0.1:8765
      demoai login http://127.0.0.1:8765 --token dmai_...
    """
    from demoai.http.hub import HubClient, save_token
    from urllib.parse import urlsplit
    p = urlsplit(url)
    client = HubClient(f"{p.scheme}://{p.netloc}", token)
    try:
        who = client.json("GET", "/api/v1/user")
    finally:
        client.close()
    if not who.get("user"):
        from demoai.errors import AuthenticationRequired
        raise AuthenticationRequired("the hub did not accept this token")
    path = save_token(url, token)
    out.print(f"logged in to {esc(p.netloc)} as {esc(who['user'])} ({who['scope']}); token saved in {path}")

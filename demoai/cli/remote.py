"""``demoai remote|push|fetch|pull|clone|login``: parse, call the porcelain, print."""
from __future__ import annotations

from typing import Any

import click

from demoai.cli.common import Bars, err, esc, handle_errors, json_option, open_repo, out, print_json

__all__ = ["remote", "push", "fetch", "pull", "clone", "login"]


def _mb(n: int) -> str:
    return f"{n / 1e6:.2f} MB"


def _stats_line(stats: dict[str, Any]) -> str:
    if not stats:
        return "nothing to transfer"
    return (f"{stats.get('git_sent', 0)} objects, {stats.get('chunks_sent', 0)} chunks, "
            f"{stats.get('files_sent', 0)} table files; {_mb(stats.get('bytes_sent', 0))} sent, "
            f"{_mb(stats.get('bytes_received', 0))} received")


@click.group()
def remote() -> None:
    """Named hub repository URLs."""


@remote.command("add")
@click.argument("name")
@click.argument("url")
@handle_errors
def remote_add(name: str, url: str) -> None:
    """Remember URL (http://HOST:PORT/OWNER/NAME) as remote NAME."""
    from demoai.porcelain import remote_add as add
    add(open_repo(), name, url)


@remote.command("remove")
@click.argument("name")
@handle_errors
def remote_remove(name: str) -> None:
    """Forget remote NAME and its remote-tracking branches."""
    from demoai.porcelain import remote_remove as rm
    rm(open_repo(), name)


@remote.command("list")
@json_option
@handle_errors
def remote_list(as_json: bool) -> None:
    """The remotes and their URLs."""
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
    """Send branches, tags or sessions (session:NAME) to a hub; only what it lacks travels."""
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
    """Bring a hub's branches (as REMOTE/BRANCH), tags and sessions here."""
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
    """Fetch, then merge the remote's counterpart of the current branch."""
    from demoai.porcelain import pull as do_pull
    with Bars(not as_json) as bars:
        res = do_pull(open_repo(), remote_name, progress=bars)
    if as_json:
        return print_json(res)
    _print_fetch(res["fetch"])
    m = res["merge"]
    out.print("fast-forward" if m.get("fast_forward") else f"merged: {esc(str(m.get('commit', ''))[:12])}")


@click.command()
@click.argument("url")
@click.argument("directory", required=False)
@click.option("--no-checkout", is_flag=True, help="Fetch only; leave the working tree empty.")
@json_option
@handle_errors
def clone(url: str, directory: str | None, no_checkout: bool, as_json: bool) -> None:
    """Copy a hub repository (http://HOST:PORT/OWNER/NAME) into a new folder."""
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
    """Check TOKEN against the hub at URL and save it for that hub."""
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

"""``demoai hub ...``: run a hub and administer its users, tokens and repositories.

The admin commands work on the hub's data directory directly (like a database's admin
tools), so they run on the hub's machine; users then reach the hub over HTTP."""
from __future__ import annotations

import click

from demoai.cli.common import _json, esc, handle_errors, json_option, out

__all__ = ["hub"]

_DATA = click.option("--data", default="./demoai-hub", show_default=True, envvar="DEMOAI_HUB_DATA",
                     help="The hub's data directory (SQLite metadata and repositories).")


def _hub(data: str):
    from demoai.hub.app import Hub
    return Hub.open(data)


@click.group()
def hub() -> None:
    """The self-hosted hub: serve it, manage users, tokens and repositories."""


@hub.command("serve")
@_DATA
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8765, show_default=True, type=int)
@handle_errors
def serve(data: str, host: str, port: int) -> None:
    """Serve the hub's pages, JSON API and push/pull protocol."""
    import uvicorn

    from demoai.hub.app import create_app
    app = create_app(data)
    out.print(f"DemoAI hub on http://{host}:{port}  (data: {esc(str(app.state.hub.data))})")
    uvicorn.run(app, host=host, port=port, log_level="warning")


@hub.command("reindex")
@_DATA
@handle_errors
def reindex(data: str) -> None:
    """Rebuild the search index of every repository (pushes keep it current)."""
    from demoai.hub.indexer import reindex_all
    counts = reindex_all(_hub(data))
    for name, docs in sorted(counts.items()):
        out.print(f"{name}: {docs} prompts and agents", markup=False)


@hub.group("user")
def user() -> None:
    """Hub users."""


@user.command("add")
@_DATA
@click.argument("name")
@handle_errors
def user_add(data: str, name: str) -> None:
    """Create user NAME."""
    _hub(data).meta.add_user(name)
    out.print(f"user {esc(name)} created")


@user.command("list")
@_DATA
@json_option
@handle_errors
def user_list(data: str, as_json: bool) -> None:
    """List users."""
    users = [u.name for u in _hub(data).meta.users()]
    if as_json:
        return _json(users)
    for u in users:
        out.print(u, markup=False)


@hub.group("token")
def token() -> None:
    """Access tokens (read or write scope)."""


@token.command("create")
@_DATA
@click.option("--user", "user_name", required=True)
@click.option("--scope", type=click.Choice(["read", "write"]), default="write", show_default=True)
@click.option("--label", default="")
@json_option
@handle_errors
def token_create(data: str, user_name: str, scope: str, label: str, as_json: bool) -> None:
    """Make a token for a user; the secret is printed once."""
    secret, tok = _hub(data).meta.create_token(user_name, scope, label)
    if as_json:
        return _json({"token": secret, "id": tok.id, "user": tok.user, "scope": tok.scope})
    click.echo(secret)


@token.command("revoke")
@_DATA
@click.argument("token_id", type=int)
@handle_errors
def token_revoke(data: str, token_id: int) -> None:
    """Revoke a token by its id."""
    _hub(data).meta.revoke_token(token_id)
    out.print(f"token {token_id} revoked")


@hub.group("repo")
def repo() -> None:
    """Hub repositories."""


@repo.command("create")
@_DATA
@click.argument("full_name", metavar="OWNER/NAME")
@click.option("--public", is_flag=True, help="Readable by anyone (default: private).")
@click.option("--description", default="")
@handle_errors
def repo_create(data: str, full_name: str, public: bool, description: str) -> None:
    """Create an empty repository."""
    from demoai.hub.app import Principal
    h = _hub(data)
    owner, _, name = full_name.partition("/")
    h.create_repo(Principal(owner, "write"), owner, name, not public, description)
    out.print(f"repository {esc(full_name)} created ({'public' if public else 'private'})")


@repo.command("list")
@_DATA
@json_option
@handle_errors
def repo_list(data: str, as_json: bool) -> None:
    """List repositories."""
    repos = [r.to_dict() for r in _hub(data).meta.repos()]
    if as_json:
        return _json(repos)
    for r in repos:
        out.print(f"{r['full_name']}\t{'private' if r['private'] else 'public'}", markup=False)

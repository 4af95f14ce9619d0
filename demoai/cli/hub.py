"""``demoai hub ...``: run a hub and administer its users, tokens and repositories.

The admin commands work on the hub's data directory directly (like a database's admin
tools), so they run on the hub's machine; users then reach the hub over HTTP."""
from __future__ import annotations

import click

from demoai.cli.common import esc, handle_errors, json_option, out, print_json

__all__ = ["hub"]

_DATA = click.option("--data", default="./demoai-hub", show_default=True, envvar="DEMOAI_HUB_DATA",
                     help="The hub's data directory (SQLite metadata and repositories).")


def _hub(data: str):
    from demoai.hub.app import Hub
    return Hub.open(data)


@click.group()
def hub() -> None:
    """Run the self-hosted hub and manage its users, tokens and repositories.

    \b
    These commands work on the hub's data directory (--data, or DEMOAI_HUB_DATA), so run
    them on the hub's machine; everyone else reaches the hub over HTTP.
    Example:
      demoai hub user add alice --data /srv/demoai-hub
      demoai hub token create --user alice --scope write --data /srv/demoai-hub
      demoai hub serve --data /srv/demoai-hub --port 8765
    """


@hub.command("serve")
@_DATA
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", default=8765, show_default=True, type=click.IntRange(0, 65535), help="Port to listen on.")
@handle_errors
def serve(data: str, host: str, port: int) -> None:
    """Serve the hub's pages, JSON API and push/pull protocol over HTTP.

    \b
    Example:
      demoai hub serve --data /srv/demoai-hub --host 127.0.0.1 --port 8765
    """
    import uvicorn

    from demoai.hub.app import Backends, create_app
    backends = Backends.from_env()
    app = create_app(data, backends=backends)
    out.print(f"DemoAI hub on http://{host}:{port}  (data: {esc(str(app.state.hub.data))}; "
              f"{esc(backends.describe())})")
    uvicorn.run(app, host=host, port=port, log_level="warning")


@hub.command("reindex")
@_DATA
@handle_errors
def reindex(data: str) -> None:
    """Rebuild the search index of every repository (pushes keep it current).

    \b
    Example:
      demoai hub reindex --data /srv/demoai-hub
    """
    from demoai.hub.indexer import reindex_all
    counts = reindex_all(_hub(data))
    for name, docs in sorted(counts.items()):
        out.print(f"{name}: {docs} prompts, agents and dataset cards", markup=False)


@hub.group("user")
def user() -> None:
    """Add and list hub users."""


@user.command("add")
@_DATA
@click.argument("name")
@handle_errors
def user_add(data: str, name: str) -> None:
    """Create the hub user NAME (who then owns NAME/... repositories).

    \b
    Example:
      demoai hub user add alice --data /srv/demoai-hub
    """
    _hub(data).meta.add_user(name)
    out.print(f"user {esc(name)} created")


@user.command("list")
@_DATA
@json_option
@handle_errors
def user_list(data: str, as_json: bool) -> None:
    """List the hub's users."""
    users = [u.name for u in _hub(data).meta.users()]
    if as_json:
        return print_json(users)
    for u in users:
        out.print(u, markup=False)


@hub.group("token")
def token() -> None:
    """Create and revoke access tokens (read or write scope)."""


@token.command("create")
@_DATA
@click.option("--user", "user_name", required=True, help="The user the token acts as.")
@click.option("--scope", type=click.Choice(["read", "write"]), default="write", show_default=True,
              help="read: clone, fetch, pull; write: push too.")
@click.option("--label", default="", help="A note to tell tokens apart (e.g. the machine).")
@json_option
@handle_errors
def token_create(data: str, user_name: str, scope: str, label: str, as_json: bool) -> None:
    """Make a token for a user; the secret is printed once (only its hash is kept).

    \b
    Example:
      demoai hub token create --user alice --scope read --label laptop --data /srv/demoai-hub
    """
    secret, tok = _hub(data).meta.create_token(user_name, scope, label)
    if as_json:
        return print_json({"token": secret, "id": tok.id, "user": tok.user, "scope": tok.scope})
    click.echo(secret)


@token.command("revoke")
@_DATA
@click.argument("token_id", type=int)
@handle_errors
def token_revoke(data: str, token_id: int) -> None:
    """Revoke the token whose id is TOKEN_ID (`token create --json` shows the id)."""
    _hub(data).meta.revoke_token(token_id)
    out.print(f"token {token_id} revoked")


@hub.group("repo")
def repo() -> None:
    """Create and list hub repositories."""


@repo.command("create")
@_DATA
@click.argument("full_name", metavar="OWNER/NAME")
@click.option("--public", is_flag=True, help="Readable by anyone (default: private).")
@click.option("--description", default="", help="One line shown on the hub's pages.")
@handle_errors
def repo_create(data: str, full_name: str, public: bool, description: str) -> None:
    """Create the empty repository OWNER/NAME (a first push also creates it).

    \b
    Example:
      demoai hub repo create alice/qa --public --description "QA data" --data /srv/demoai-hub
    """
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
    """List the hub's repositories and whether each is private."""
    repos = [r.to_dict() for r in _hub(data).meta.repos()]
    if as_json:
        return print_json(repos)
    for r in repos:
        out.print(f"{r['full_name']}\t{'private' if r['private'] else 'public'}", markup=False)

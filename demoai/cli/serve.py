"""``demoai serve``: the HTTP API of one repository, on uvicorn."""
from __future__ import annotations

import ipaddress

import click

from demoai.cli.common import err, handle_errors

__all__ = ["serve", "is_loopback"]


def is_loopback(host: str) -> bool:
    """Whether ``host`` only listens on this machine (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False          # a name: it may resolve to anything


@click.command()
@click.argument("repo", required=False, default=".")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535),
              help="Port to listen on.")
@click.option("--token", envvar="DEMOAI_SERVE_TOKEN", default=None,
              help="Bearer token every request must carry (or DEMOAI_SERVE_TOKEN).")
@click.option("--no-token", is_flag=True,
              help="Serve a non-loopback address without a token (anyone who reaches it may run agents).")
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["critical", "error", "warning", "info", "debug"]),
              help="How much uvicorn logs.")
@handle_errors
def serve(repo: str, host: str, port: int, token: str | None, no_token: bool, log_level: str) -> None:
    """Serve REPO (default: the current one) over HTTP: agents, sessions, models.

    \b
    Models answer OpenAI-compatible requests under /v1; the OpenAPI page is /docs.
    Binds 127.0.0.1 unless --host says otherwise; any other address needs a token
    (--token or DEMOAI_SERVE_TOKEN), or --no-token to serve it open on purpose.
    Example:
      demoai serve
      DEMOAI_SERVE_TOKEN=s3cret demoai serve --host 0.0.0.0 --port 8000
    """
    if token and no_token:
        raise click.UsageError("--token and --no-token exclude each other")
    if not token and not no_token and not is_loopback(host):
        raise click.UsageError(f"refusing to serve {host} without a token: pass --token "
                               "(or set DEMOAI_SERVE_TOKEN), or --no-token to serve it open")
    import uvicorn

    from demoai.server import create_app
    app = create_app(repo, token=token)
    err.print(f"serving {app.state.root} on http://{host}:{port} "
              f"({'token required' if token else 'no token'}); OpenAPI at /docs", highlight=False)
    uvicorn.run(app, host=host, port=port, log_level=log_level)

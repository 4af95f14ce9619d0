"""The HTTP API of one repository (installed as ``demoai.server``; ``demoai serve`` runs it).

:func:`create_app` builds the FastAPI app: ``/api`` for agents, sessions, runs, forks,
replays and their progress as server-sent events; ``/v1`` for the repository's models
behind the OpenAI API. :class:`demoai.http.serve.ServeClient` is its Python client.
"""
from demoai.server.app import create_app

__all__ = ["create_app"]

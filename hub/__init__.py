"""The self-hosted hub (installed as ``demoai.hub``; ``demoai hub serve`` runs it): users and
tokens in SQLite, repositories on disk, the push/pull protocol, a JSON read API and web pages.
Everything it shows or stores goes through :mod:`demoai.porcelain` (``browse``, ``hosting``)."""

"""HTTP on the client side: the plumbing every client shares (``client``: token, timeouts,
retries, typed errors), typed errors to and from HTTP answers (``errors``), the hub's
client and sync endpoint (``hub``) and the serving API's client (``serve``)."""
from demoai.http.client import HttpClient
from demoai.http.serve import ServeClient

__all__ = ["HttpClient", "ServeClient"]

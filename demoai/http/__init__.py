"""HTTP on the client side: typed errors to and from HTTP answers (``errors``), the hub's
client and sync endpoint (``hub``) and the serving API's client (``serve``)."""
from demoai.http.serve import ServeClient

__all__ = ["ServeClient"]

"""An S3-API server for the tests: ``moto`` in server mode on 127.0.0.1 (the stand-in for
S3 or MinIO), in a thread of the test process.

The server keeps its buckets in this process's memory, so :meth:`S3Server.stop` followed by
:meth:`S3Server.start` is an object store that went away and came back with its data, on
the same port. :attr:`S3Server.env` is what a hub process needs to reach it (endpoint and
dummy credentials, as ``AWS_*`` variables).
"""
from __future__ import annotations

import logging
import threading
import time

__all__ = ["S3Server", "BUCKET"]

BUCKET = "demoai-hub"


class S3Server:
    """A moto S3 server with bucket ``bucket`` created; ``endpoint`` is its URL."""

    def __init__(self, bucket: str = BUCKET) -> None:
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
        logging.getLogger("werkzeug").setLevel(logging.ERROR)    # no line per request
        self.app = DomainDispatcherApplication(create_backend_app)
        self.bucket = bucket
        self.port = 0
        self.server = None
        self.thread: threading.Thread | None = None
        self.start()
        import boto3
        self.client = boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                                   aws_access_key_id="testing", aws_secret_access_key="testing")
        self.client.create_bucket(Bucket=bucket)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        """The variables a client of this server needs."""
        return {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_DEFAULT_REGION": "us-east-1", "DEMOAI_HUB_S3_ENDPOINT": self.endpoint}

    def url(self, prefix: str) -> str:
        """``s3://BUCKET/PREFIX`` for a hub."""
        return f"s3://{self.bucket}/{prefix}"

    def start(self) -> "S3Server":
        """Serve (again, on the same port once one was chosen)."""
        from moto.moto_server.werkzeug_app import MotoRequestHandler
        from werkzeug.serving import make_server
        deadline = time.monotonic() + 30
        while True:
            try:
                self.server = make_server("127.0.0.1", self.port, self.app, threaded=True,
                                          request_handler=MotoRequestHandler)
                break
            except OSError:       # the old socket is not released yet
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True,
                                       name="moto-s3")
        self.thread.start()
        return self

    def stop(self) -> None:
        """Stop answering: the listening socket is closed, so connections are refused until
        :meth:`start`."""
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.thread.join(timeout=30)
            self.server = None

    def keys(self, prefix: str = "") -> list[str]:
        """Every key in the bucket below ``prefix``."""
        out = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            out.extend(o["Key"] for o in page.get("Contents", []))
        return out

    def close(self) -> None:
        """Stop the server."""
        self.stop()

"""An S3-compatible bucket for the hub's objects (``DEMOAI_HUB_OBJECTS=s3://BUCKET/PREFIX``):
the few calls :mod:`demoai.hub.storage_s3` needs, through boto3.

Any server that speaks the S3 API works (AWS S3, MinIO, Ceph, ...; the tests use ``moto``
in server mode). Its URL is the ``endpoint_url`` given (the hub takes it from
``DEMOAI_HUB_S3_ENDPOINT``, ``AWS_ENDPOINT_URL_S3`` or ``AWS_ENDPOINT_URL``; none: AWS);
credentials and region come from the usual ``AWS_*`` variables or files, never from the
hub's own settings. Addressing is path-style, which every S3-compatible server accepts.

Failures are typed: a server that cannot be reached, times out or answers with an error is
:class:`~demoai.errors.StorageUnavailable` (HTTP 503); a key that is not there is
``MissingObject``. Calls time out quickly (3 s to connect) and are tried twice, so a bucket
that went away is a prompt 503 rather than a hung request.
"""
from __future__ import annotations

import os
from typing import Callable, TypeVar
from urllib.parse import urlsplit

from demoai.errors import InvalidRefName, MissingObject

from demoai.errors import StorageUnavailable

__all__ = ["ObjectBucket", "parse_bucket_url"]

T = TypeVar("T")


def parse_bucket_url(url: str) -> tuple[str, str]:
    """``s3://BUCKET[/PREFIX]`` -> ``(bucket, prefix)`` (the prefix without slashes at its
    ends; may be empty). ``InvalidRefName`` if malformed."""
    p = urlsplit(url)
    if p.scheme != "s3" or not p.netloc or p.query or p.fragment:
        raise InvalidRefName(f"DEMOAI_HUB_OBJECTS={url!r}: expected s3://BUCKET/PREFIX",
                             name="DEMOAI_HUB_OBJECTS")
    return p.netloc, p.path.strip("/")


class ObjectBucket:
    """Keys under ``s3://BUCKET/PREFIX`` through boto3. ``endpoint_url`` (None: AWS, or what
    ``AWS_ENDPOINT_URL`` names) points at any S3-compatible server; credentials and region
    come from the usual ``AWS_*`` variables. Every failure to reach the server is
    :class:`StorageUnavailable`; a missing key is ``MissingObject``."""

    def __init__(self, url: str, endpoint_url: str | None = None, *, connect_timeout: float = 3.0,
                 read_timeout: float = 60.0, attempts: int = 2) -> None:
        try:
            import boto3
            from boto3.s3.transfer import TransferConfig
            from botocore.config import Config
        except ImportError:    # pragma: no cover - the hub-scale extra is not installed
            raise StorageUnavailable("DEMOAI_HUB_OBJECTS needs boto3 (pip install "
                                     "'demoai[hub-scale]')", service="s3") from None
        self.url = url
        self.bucket, self.prefix = parse_bucket_url(url)
        self.client = boto3.session.Session().client(
            "s3", endpoint_url=endpoint_url or None,
            region_name=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1",
            config=Config(connect_timeout=connect_timeout, read_timeout=read_timeout,
                          retries={"max_attempts": attempts, "mode": "standard"},
                          max_pool_connections=32, s3={"addressing_style": "path"}))
        self.transfer = TransferConfig(multipart_threshold=64 << 20, multipart_chunksize=16 << 20,
                                       max_concurrency=4)

    def key(self, rel: str) -> str:
        """The full key of ``rel`` (a path below the prefix)."""
        return f"{self.prefix}/{rel}" if self.prefix else rel

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        from boto3.exceptions import Boto3Error
        from botocore.exceptions import BotoCoreError, ClientError
        from s3transfer.exceptions import RetriesExceededError
        try:
            return fn()
        except ClientError as e:
            code = str(e.response.get("Error", {}).get("Code", ""))
            if code in ("NoSuchKey", "404", "NotFound"):
                raise MissingObject(f"s3://{self.bucket}/{what} is not in the bucket",
                                    object=what) from None
            raise StorageUnavailable(f"object storage refused {what} ({code or e})",
                                     service="s3") from None
        except (BotoCoreError, Boto3Error, RetriesExceededError, OSError) as e:
            if isinstance(e, (FileNotFoundError, PermissionError)):
                raise                   # a local file, not the bucket
            raise StorageUnavailable(f"object storage cannot be reached ({e.__class__.__name__})",
                                     service="s3") from None

    def check(self) -> None:
        """Raise :class:`StorageUnavailable` unless the bucket exists and answers."""
        try:
            self._call(self.bucket, lambda: self.client.head_bucket(Bucket=self.bucket))
        except MissingObject:
            raise StorageUnavailable(f"bucket {self.bucket!r} does not exist (create it first)",
                                     service="s3") from None

    def put_bytes(self, rel: str, data: bytes) -> None:
        """Store ``data`` at ``rel``."""
        self._call(rel, lambda: self.client.put_object(Bucket=self.bucket, Key=self.key(rel), Body=data))

    def put_file(self, rel: str, path: str | os.PathLike) -> None:
        """Store the file ``path`` at ``rel`` (multipart when large)."""
        self._call(rel, lambda: self.client.upload_file(os.fspath(path), self.bucket, self.key(rel),
                                                        Config=self.transfer))

    def get_bytes(self, rel: str) -> bytes:
        """The bytes at ``rel``."""
        return self._call(rel, lambda: self.client.get_object(Bucket=self.bucket,
                                                              Key=self.key(rel))["Body"].read())

    def get_file(self, rel: str, path: str | os.PathLike) -> None:
        """Download ``rel`` into the file ``path``."""
        self._call(rel, lambda: self.client.download_file(self.bucket, self.key(rel), os.fspath(path),
                                                          Config=self.transfer))

    def list(self, rel_prefix: str) -> list[str]:
        """Every key below ``rel_prefix``, relative to it."""
        full = self.key(rel_prefix)

        def run() -> list[str]:
            out = []
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket,
                                                                                Prefix=full):
                out.extend(o["Key"][len(full):] for o in page.get("Contents", []))
            return out
        return self._call(rel_prefix, run)

    def delete_prefix(self, rel_prefix: str) -> None:
        """Delete every key below ``rel_prefix``."""
        keys = self.list(rel_prefix)
        for i in range(0, len(keys), 1000):
            batch = [{"Key": self.key(rel_prefix + k)} for k in keys[i:i + 1000]]
            self._call(rel_prefix, lambda b=batch: self.client.delete_objects(
                Bucket=self.bucket, Delete={"Objects": b, "Quiet": True}))

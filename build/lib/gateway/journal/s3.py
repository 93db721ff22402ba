"""`S3BlobStore`, the BlobStore (gateway.journal.base) in a bucket of S3-compatible storage: AWS S3, MinIO,
Cloudflare R2, Google Cloud Storage's XML API, through one code path.

`VISIONRAG_BLOB_URL=s3://bucket/prefix` says where. The endpoint, region and credentials are boto3's own
configuration (AWS_ENDPOINT_URL, AWS_DEFAULT_REGION, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, a profile,
an instance or pod role), so whatever AWS's tools take works here and nothing else is needed.

Layout: an image at `prefix/<sha256>`; what is derived from it at `prefix/thumbnails/<sha256>/<name>`,
so one listing finds all of them. The credentials need GetObject, PutObject, DeleteObject and ListBucket
on the prefix (without ListBucket a missing object answers 403, which reads as an outage).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from contextlib import closing, contextmanager
from typing import Any
from urllib.parse import urlsplit

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from gateway.journal.base import BlobStream, BlobUnavailable
from gateway.journal.keys import check_key, is_key, split_name

log = logging.getLogger("visionrag.blobs")

# What a streamed read hands on at a time (boto3's own default is 1 KiB).
CHUNK = 256 * 1024
# Standard retries (exponential backoff with jitter, for throttling, 5xx and dropped connections;
# AWS_MAX_ATTEMPTS sets how many). Timeouts short enough that an endpoint that hangs frees the request's
# thread soon; the read timeout bounds each socket read, not a whole transfer. Connections for the
# threads that may call at once: the routes' pool, the ingest worker, the finisher.
# A new one per client: botocore writes AWS_MAX_ATTEMPTS into the `retries` dict it is given, which a
# shared Config would pass on to every later client.
def client_config() -> Config:
    return Config(retries={"mode": "standard"}, connect_timeout=3, read_timeout=20, max_pool_connections=64)


# How S3 says an object is not there: GET's error code, HEAD's bare status.
_MISSING = frozenset({"NoSuchKey", "404", "NotFound"})


def parse_url(url: str) -> tuple[str, str]:
    """`s3://bucket/prefix` as (bucket, prefix); ValueError for anything else."""
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc or parts.query or parts.fragment:
        raise ValueError(f"VISIONRAG_BLOB_URL must look like s3://bucket/prefix, not {url!r}")
    return parts.netloc, parts.path.strip("/")


class S3BlobStore:
    def __init__(self, bucket: str, prefix: str = "", client: Any = None) -> None:
        """Objects in `bucket` under `prefix`; `client` is boto3's S3 client, made from the standard AWS
        configuration when not given. Nothing is sent until the first call."""
        self.bucket = bucket
        self.prefix = f"{prefix.strip('/')}/" if prefix.strip("/") else ""
        # Clients are safe to share between threads; a session is not, so it is this one's alone.
        self.client = client or boto3.session.Session().client("s3", config=client_config())

    @classmethod
    def from_url(cls, url: str) -> S3BlobStore:
        return cls(*parse_url(url))

    def key(self, sha256: str) -> str:
        return f"{self.prefix}{check_key(sha256)}"

    def derived_key(self, sha256: str, name: str) -> str:
        split_name(name)
        return f"{self._derived_prefix(sha256)}{name}"

    def _derived_prefix(self, sha256: str) -> str:
        return f"{self.prefix}thumbnails/{check_key(sha256)}/"

    def put(self, data: bytes, sha256: str | None = None) -> str:
        digest = check_key(sha256 or hashlib.sha256(data).hexdigest())
        # Looked for first: most images of a chat are stored already, and a HEAD costs no upload. Two
        # writers of a new image may both PUT it: the same bytes, and each PUT replaces the object whole.
        # (A conditional PUT, If-None-Match, would spare the second; not every S3-compatible store takes it.)
        if digest not in self:
            self._put(self.key(digest), data)
        return digest

    def get(self, sha256: str) -> bytes | None:
        if not is_key(sha256):
            return None
        return self._read(self.key(sha256))

    def open(self, sha256: str) -> BlobStream | None:
        if not is_key(sha256):
            return None
        key = self.key(sha256)
        response = self._get_object(key)
        if response is None:
            return None
        body = response["Body"]
        return BlobStream(response["ContentLength"], _chunks(body, key), body.close)

    def __contains__(self, sha256: str) -> bool:
        if not is_key(sha256):
            return False
        key = self.key(sha256)
        with _failing("HEAD", key):
            try:
                self.client.head_object(Bucket=self.bucket, Key=key)
            except ClientError as exc:
                if _missing(exc):
                    return False
                raise
        return True

    def delete(self, sha256: str) -> bool:
        # Looked for first, to answer whether it was there (S3's DELETE does not say), and so that a
        # versioned bucket gets no delete marker for an object it never held.
        if sha256 not in self:
            return False
        key = self.key(sha256)
        with _failing("DELETE", key):
            self.client.delete_object(Bucket=self.bucket, Key=key)
        return True

    def put_derived(self, sha256: str, name: str, data: bytes) -> None:
        self._put(self.derived_key(sha256, name), data)

    def get_derived(self, sha256: str, name: str) -> bytes | None:
        if not is_key(sha256):
            return None
        return self._read(self.derived_key(sha256, name))

    def delete_derived(self, sha256: str) -> None:
        if not is_key(sha256):
            return
        prefix = self._derived_prefix(sha256)
        with _failing("LIST/DELETE", prefix):
            pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
            for page in pages:
                # One by one: an image has a handful, and GCS's XML API has no multi-object delete.
                for item in page.get("Contents", ()):
                    self.client.delete_object(Bucket=self.bucket, Key=item["Key"])

    def _put(self, key: str, data: bytes) -> None:
        # One PUT: S3 stores an object whole or not at all, so no reader ever finds part of it.
        with _failing("PUT", key):
            self.client.put_object(Bucket=self.bucket, Key=key, Body=data)

    def _get_object(self, key: str) -> dict[str, Any] | None:
        with _failing("GET", key):
            try:
                return self.client.get_object(Bucket=self.bucket, Key=key)
            except ClientError as exc:
                if _missing(exc):
                    return None
                raise

    def _read(self, key: str) -> bytes | None:
        response = self._get_object(key)
        if response is None:
            return None
        with _failing("GET", key), closing(response["Body"]) as body:
            return body.read()


def _chunks(body: Any, key: str) -> Iterator[bytes]:
    with _failing("GET", key):
        yield from body.iter_chunks(CHUNK)


def _missing(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") in _MISSING


@contextmanager
def _failing(operation: str, key: str) -> Iterator[None]:
    """botocore's failures (after its retries) as BlobUnavailable; the cause goes to the log here, where
    the operation and the key are known, since callers log only that the storage is unavailable."""
    try:
        yield
    except (BotoCoreError, ClientError) as exc:
        log.warning("S3 %s %s failed: %s: %s", operation, key, type(exc).__name__, exc)
        raise BlobUnavailable() from exc

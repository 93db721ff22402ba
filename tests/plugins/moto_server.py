"""An S3-compatible endpoint on loopback: moto's server mode (`moto[server]`), once per test session.

`moto_server` starts `moto_server -H 127.0.0.1 -p PORT` from this venv in its own process group, waits
until it answers, and stops the group at session end. It is a real HTTP server speaking S3's API, so
the gateway reaches it as it reaches AWS, MinIO or R2: through boto3's standard configuration, the
variables of `MotoServer.env` (AWS_ENDPOINT_URL and throwaway credentials).

`s3_url`: a fresh bucket for one test, as VISIONRAG_BLOB_URL takes it (`s3://<bucket>/images`), with this
process's AWS variables pointed at the server for the test. A gateway or worker started as a process
gets the same with `env={**os.environ, **moto_server.env}`; `moto_server.keys(url)` lists what a
bucket holds (to check that a forgotten image left nothing).
"""

from __future__ import annotations

import atexit
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from gateway.journal.s3 import parse_url
from serving.stack import free_port, http_ok, start_process_group, stop_process_group, wait_until

START_DEADLINE_S = 60.0


@dataclass(frozen=True)
class MotoServer:
    endpoint: str  # http://127.0.0.1:PORT
    pid: int  # leader of the server's process group
    log_path: Path

    @property
    def env(self) -> dict[str, str]:
        """What a client needs to reach the server, and nothing of the machine's own AWS configuration."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_CONFIG_FILE": "/nonexistent/aws-config",
            "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/aws-credentials",
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def client(self) -> Any:
        """A boto3 S3 client of the server, whatever this process's environment says."""
        env = self.env
        return boto3.session.Session(
            aws_access_key_id=env["AWS_ACCESS_KEY_ID"], aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
            region_name=env["AWS_DEFAULT_REGION"],
        ).client("s3", endpoint_url=self.endpoint)

    def bucket(self) -> str:
        """A new, empty bucket's name."""
        name = f"test-{uuid.uuid4().hex[:20]}"
        self.client().create_bucket(Bucket=name)
        return name

    def keys(self, url: str) -> list[str]:
        """Every key under an `s3://bucket/prefix` URL, sorted."""
        bucket, prefix = parse_url(url)
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return sorted(item["Key"] for page in pages for item in page.get("Contents", ()))


def start_moto(workdir: Path) -> MotoServer:
    port = free_port()
    log_path = workdir / "moto.log"
    argv = [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)]
    process = start_process_group(argv, log_path)
    atexit.register(stop_process_group, process.pid, 5.0)  # in case the session is torn down hard
    endpoint = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: http_ok(f"{endpoint}/moto-api/"), process=process, deadline_s=START_DEADLINE_S,
                   what="moto_server", log_path=log_path)
    except RuntimeError:
        stop_process_group(process.pid, grace_s=5.0)
        raise
    return MotoServer(endpoint, process.pid, log_path)


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    """The session's moto server."""
    server = start_moto(tmp_path_factory.mktemp("moto"))
    try:
        yield server
    finally:
        stop_process_group(server.pid, grace_s=5.0)


@pytest.fixture
def s3_url(moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch) -> str:
    """`s3://<a new bucket>/images`, with this process's AWS variables set to reach it."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3", "AWS_MAX_ATTEMPTS", "AWS_RETRY_MODE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in moto_server.env.items():
        monkeypatch.setenv(name, value)
    return f"s3://{moto_server.bucket()}/images"

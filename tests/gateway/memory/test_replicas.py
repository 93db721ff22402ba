"""Replicas on shared state, end to end: the tiny vLLM, PostgreSQL (the journal), moto's S3 server (the
images), two gateway processes and two `visionrag worker` processes, one of each SIGKILLed mid-load.

The gateways run with memory off (a Qdrant server cannot run on this machine, and an embedded store is
one process's alone): history, images and forgetting come from the shared journal and bucket. Each
worker writes the vectors to an embedded store of its own, so the two stores show which worker
embedded what: together they must hold every exchange, and no exchange twice.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import boto3
import httpx
import openai
import pytest

from gateway.journal.postgres import PostgresJournal
from tests.gateway.memory.conftest import noise_png
from tests.gateway.memory.test_e2e import stored_exchange_ids
from tests.plugins.gateway_server import ROOT, GatewayProcess, free_port, kill_group, stop_group
from tests.plugins.media import data_url, image_message

pytestmark = pytest.mark.slow

KEYS = "acme:key-a"
A = {"Authorization": "Bearer key-a"}
OPS = {"Authorization": "Bearer key-ops"}
CHATS = 96
CONCURRENCY = 16


@dataclass
class WorkerProcess:
    name: str
    data_dir: Path
    env: dict[str, str]
    metrics_port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def log_path(self) -> Path:
        return self.data_dir / f"{self.name}.log"

    def start(self) -> WorkerProcess:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child process
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "worker", "--name", self.name,
             "--metrics-port", str(self.metrics_port)],
            cwd=ROOT, env={**os.environ, **self.env, "VISIONRAG_DATA_DIR": str(self.data_dir)},
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        return self

    def kill(self) -> None:
        kill_group(self.process)

    def stop(self) -> None:
        stop_group(self.process, 30)

    def log_tail(self) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-30:])


def chat(gateway: GatewayProcess, model: str, n: int) -> tuple[str, str] | None:
    """One chat with its own image; (exchange id, image sha256) as the client saw it, None if the
    gateway died under it (the client got no answer, so nothing it received can be lost)."""
    import hashlib

    image = noise_png(1000 + n)
    client = gateway.client(api_key="key-a", timeout=60)
    try:
        raw = client.chat.completions.with_raw_response.create(
            model=model, messages=image_message(data_url(image), f"Question {n}: what is shown?"),
            max_tokens=4, temperature=0, user="alice")
        raw.parse()
    except (openai.APIConnectionError, openai.APIStatusError):
        return None
    return raw.headers["x-visionrag-exchange-id"], hashlib.sha256(image).hexdigest()


def test_two_gateways_and_two_workers_lose_nothing_and_embed_everything_once(
    vllm_server, start_gateway, postgres_url: str, s3_url: str, clip_cache: Path, tmp_path: Path
) -> None:
    shared = {
        "VISIONRAG_DATABASE_URL": postgres_url,
        "VISIONRAG_BLOB_URL": s3_url,
        "VISIONRAG_API_KEYS": KEYS,
        "VISIONRAG_ADMIN_KEYS": "key-ops",
    }
    for i in (1, 2):
        (tmp_path / f"gateway-{i}").mkdir()
    gateways = [start_gateway(vllm_server.base_url, data_dir=tmp_path / f"gateway-{i}", **shared)
                for i in (1, 2)]
    worker_env = {
        **shared,
        "VISIONRAG_FASTEMBED_CACHE_DIR": str(clip_cache),
        "VISIONRAG_INGEST_POLL_INTERVAL_S": "0.1",
        "VISIONRAG_EMBED_BATCH_SIZE": "4",
        "VISIONRAG_WORKER_LEASE_S": "3",  # a killed worker's claims come back soon
        "HF_HUB_OFFLINE": "1",
    }
    workers = [WorkerProcess(f"worker-{i}", tmp_path / f"worker-{i}", worker_env).start() for i in (1, 2)]
    try:
        model = vllm_server.model
        received: list[tuple[str, str]] = []
        killed = threading.Event()

        def one(n: int) -> None:
            if (result := chat(gateways[n % 2], model, n)) is not None:
                received.append(result)
            if n == CHATS // 2 and not killed.is_set():
                killed.set()
                gateways[0].kill()
                workers[0].kill()

        with ThreadPoolExecutor(CONCURRENCY) as pool:
            list(pool.map(one, range(CHATS)))
        assert killed.is_set()
        # At least the surviving gateway's half answered.
        assert len(received) >= CHATS // 2, gateways[1].log_tail()

        # Both back, as an orchestrator would restart them; the worker under the same name and store.
        gateways[0].start()
        workers[0].start()
        journal = PostgresJournal(postgres_url)
        try:
            deadline = time.monotonic() + 180
            while journal.backlog() and time.monotonic() < deadline:
                time.sleep(0.5)
            assert journal.backlog() == 0, workers[0].log_tail() + workers[1].log_tail()
            recorded = journal.count()
        finally:
            journal.close()

        # The backlog and the work done, where an autoscaler reads them: a worker's metrics, a gateway's.
        scraped = httpx.get(f"http://127.0.0.1:{workers[1].metrics_port}/metrics", timeout=10).text
        assert "visionrag_ingest_backlog 0.0" in scraped
        assert re.search(r"^visionrag_ingested_exchanges_total [1-9]", scraped, re.MULTILINE)
        assert "visionrag_ingest_backlog 0.0" in httpx.get(gateways[1].url + "/metrics", headers=OPS, timeout=10).text

        # 0 lost, 0 duplicated: every answer a client received is recorded, once.
        ids = [exchange_id for exchange_id, _ in received]
        assert len(set(ids)) == len(ids)
        listed = list_all(gateways[1])
        assert set(ids) <= set(listed) and len(listed) == len(set(listed)) == recorded

        # History and images answer the same from either gateway.
        exchange_id, sha = received[0]
        for path in (f"/exchanges/{exchange_id}", f"/images/{sha}"):
            first, second = (httpx.get(g.url + path, headers=A, timeout=30) for g in gateways)
            assert first.status_code == second.status_code == 200
            # The same, but for the links each gateway gives to itself.
            assert first.content.replace(gateways[0].url.encode(), b"") == second.content.replace(
                gateways[1].url.encode(), b"")

        # A forget through one gateway is gone through the other at once, and from the bucket once a
        # worker's finisher of deletions got to it (workers look for deletions every 2 s).
        assert httpx.delete(f"{gateways[0].url}/exchanges/{exchange_id}", headers=A, timeout=30).status_code == 204
        assert httpx.get(f"{gateways[1].url}/exchanges/{exchange_id}", headers=A, timeout=30).status_code == 404
        assert httpx.get(f"{gateways[1].url}/images/{sha}", headers=A, timeout=30).status_code == 404
        bucket, _, prefix = s3_url.removeprefix("s3://").partition("/")
        s3 = boto3.client("s3")
        deadline = time.monotonic() + 15
        while True:
            keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])]
            if not any(sha in key for key in keys) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert not any(sha in key for key in keys)
    finally:
        for worker in workers:
            worker.stop()

    # Each exchange embedded exactly once, across the two workers' stores (the forgotten one's points
    # went from the store of the worker that finished the deletion, if it held them).
    stores = [stored_exchange_ids("edge", worker.data_dir) for worker in workers]
    kept = set(listed) - {exchange_id}
    assert not set(stores[0]) & set(stores[1]), "an exchange is in both workers' stores"
    assert (set(stores[0]) | set(stores[1])) - {exchange_id} == kept
    assert set((stores[0] + stores[1]).values()) == {1}


def list_all(gateway: GatewayProcess) -> list[str]:
    """Every exchange id the tenant's history lists, page by page."""
    listed: list[str] = []
    cursor = None
    while True:
        params = {"limit": 100, **({"cursor": cursor} if cursor else {})}
        page = httpx.get(gateway.url + "/exchanges", params=params, headers=A, timeout=30).json()
        listed += [row["id"] for row in page["data"]]
        if not (cursor := page.get("next_cursor")):
            return listed

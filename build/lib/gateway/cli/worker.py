"""`visionrag worker`: the memory path's background work, apart from the gateways.

With a shared journal (VISIONRAG_DATABASE_URL) the gateways only answer and record; any number of
workers embed the backlog (each claims batches of it, gateway.journal.base.Journal.claim), finish
deletions, and sweep retention (one worker at a time). A worker serves nothing but its metrics.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from typing import Annotated

import typer

from gateway.cli.output import err, fail


def worker(
    name: Annotated[str | None, typer.Option(
        help="This worker's name in the journal's claims (default: host-pid). Keep it across restarts of a "
             "worker whose vector store is its own.")] = None,
    metrics_port: Annotated[int | None, typer.Option(
        help="Serve Prometheus metrics (backlog, exchanges ingested) on this port.")] = None,
    metrics_host: Annotated[str, typer.Option(
        help="Interface for the metrics (0.0.0.0 in a container that is scraped).")] = "127.0.0.1",
    threads: Annotated[int | None, typer.Option(
        help="Model threads (default: VISIONRAG_EMBED_THREADS). Scale with more workers rather than threads.")] = None,
) -> None:
    """Embed the journal's backlog, finish deletions and sweep retention, until SIGTERM or Ctrl-C."""
    import asyncio

    from gateway.logs import configure as configure_logging
    from gateway.metrics import Scrape
    from gateway.runtime import Runtime
    from gateway.settings import Settings

    settings = Settings()
    if threads is not None:
        settings = settings.model_copy(update={"embed_threads": threads})
    configure_logging(settings.log_format)
    name = name or f"{socket.gethostname()}-{os.getpid()}"
    if not settings.shared_journal:
        err.print("[yellow]No VISIONRAG_DATABASE_URL: this worker shares the data dir's SQLite journal with "
                  "nobody; a gateway on the same data dir ingests by itself.[/]")
    runtime = Runtime.for_worker(settings, name)
    memory = runtime.memory
    assert memory is not None  # for_worker always builds it

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    if metrics_port is not None:
        from prometheus_client import start_http_server

        # The backlog is counted on each scrape: an autoscaler reads it from any worker.
        start_http_server(metrics_port, metrics_host, registry=Scrape([], runtime.journal.backlog))  # type: ignore[arg-type]
    from gateway.memory.store.base import StoreLocked

    try:
        try:
            memory.start()
        except StoreLocked as exc:
            raise fail(f"{exc}\nAnother process holds this embedded store: give each worker its own "
                       "VISIONRAG_DATA_DIR, or share a Qdrant server (VISIONRAG_QDRANT_URL).") from None
        runtime.history.start()  # the finisher of deletions and retention, once the store is open
        err.print(f"worker {name}: ingesting (backlog {runtime.journal.backlog()}); stop with Ctrl-C")
        last, at = memory.worker.stats.exchanges, time.monotonic()
        while not stop.wait(30):
            done, now = memory.worker.stats.exchanges, time.monotonic()
            err.print(f"worker {name}: {(done - last) / (now - at):.1f} exchanges/s, "
                      f"backlog {runtime.journal.backlog()}")
            last, at = done, now
    finally:
        asyncio.run(runtime.close())

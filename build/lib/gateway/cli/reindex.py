"""`visionrag reindex`: the vector store rebuilt from the journal."""

from __future__ import annotations

from typing import Annotated

import typer

from gateway.cli.env import load_settings
from gateway.cli.local import drain, run_local
from gateway.cli.output import console, fail


def reindex(
    threads: Annotated[int, typer.Option(min=1, help="onnxruntime threads for embedding in this process.")] = 2,
) -> None:
    """Rebuild the vector store from the journal with this version's vectors (stop the gateway first).

    The journal is the source of truth: the store is dropped, recreated with the current schema and
    refilled from every journaled exchange, with a progress bar. Needed when the gateway reports that
    the store was made with other vectors; harmless otherwise (only time).
    """
    settings = load_settings()
    if not settings.memory_enabled:
        raise fail("memory is disabled (VISIONRAG_MEMORY_ENABLED=false)")
    if not run_local(settings, lambda runtime, memory: drain(runtime, memory, rebuild=True), threads=threads):
        raise fail("a running gateway holds the vector store: stop it, then run `visionrag reindex` again")
    console.print("reindexed: the store now holds every journaled exchange with the current vectors")

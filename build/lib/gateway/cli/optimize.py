"""`visionrag optimize`: the embedded store's index built now."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from gateway.cli.env import load_settings
from gateway.cli.local import run_local
from gateway.cli.output import console, fail

if TYPE_CHECKING:
    from gateway.memory.service import Memory
    from gateway.memory.store.base import StoreStats
    from gateway.runtime import Runtime


def optimize() -> None:
    """Build the embedded store's HNSW index now (stop the gateway first: it holds the store).

    Until indexed, queries are exact brute force: fast for tenant-filtered searches, slower for one
    big tenant. A Qdrant server indexes itself; this is for the embedded store.
    """
    from gateway.memory.store.base import StoreError

    def work(_: Runtime, memory: Memory) -> tuple[bool, StoreStats, float]:
        memory.open()
        before = memory.store_stats()
        started = time.monotonic()
        with console.status(f"Indexing {before.points} points (minutes at 100k)..."):
            changed = memory.optimize_here()
        return changed, memory.store_stats(), time.monotonic() - started

    try:
        changed, after, took_s = run_local(load_settings(), work)
    except StoreError as exc:
        raise fail(str(exc)) from None
    console.print(f"{'indexed' if changed else 'already optimal'}: {after.points} points, "
                  f"{after.indexed_vectors} indexed vectors, {took_s:.1f} s")

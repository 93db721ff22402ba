"""Working on the data dir in this process: every command builds its objects through the runtime
(gateway.runtime), as the gateway does, and starts nothing in the background. The embedded vector store
is single-process: a command that finds it held by a running gateway asks that gateway instead (or,
for ingest, leaves the queue to its worker)."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

from gateway.cli.env import models_offline_if_unreachable
from gateway.cli.output import err, fail, progress

if TYPE_CHECKING:
    from gateway.memory.service import Memory
    from gateway.runtime import Runtime
    from gateway.settings import Settings

T = TypeVar("T")

HUB_UNREACHABLE = ("\nThe model hub cannot be reached from here, so only the local cache was tried. "
                   "`make run PROFILE=tiny` records its local test models for the CLI.")


def run_local(settings: Settings, work: Callable[[Runtime, Memory], T | Awaitable[T]], *,
              threads: int | None = None, needs_memory: bool = True) -> T:
    """`work(runtime, memory)` (sync or async) on one event loop, with a runtime built for this command
    (`threads`: the models' threads) and closed after it, whatever happens. A command that reads the
    journal alone says `needs_memory=False`, and gets None for memory where there is none."""
    from gateway.runtime import Runtime

    async def main() -> T:
        runtime = Runtime.for_command(settings, threads=threads)
        try:
            if runtime.memory is None and needs_memory:
                raise fail("memory is off here: a shared journal (VISIONRAG_DATABASE_URL) needs a Qdrant "
                           "server (VISIONRAG_QDRANT_URL) for the vectors this command works on.")
            result = work(runtime, runtime.memory)  # type: ignore[arg-type]
            return await result if inspect.isawaitable(result) else result
        finally:
            await runtime.close()

    return asyncio.run(main())


def drain(runtime: Runtime, memory: Memory, *, rebuild: bool = False) -> bool:
    """Embed the journal's backlog in this process. False if a running gateway holds the store.
    `rebuild`: first recreate the store with this version's schema and queue the whole journal."""
    from gateway.memory.embed import EmbedderError
    from gateway.memory.store.base import SchemaMismatch, StoreError, StoreLocked

    try:
        memory.open(rebuild=rebuild)
    except StoreLocked:
        return False
    except SchemaMismatch as exc:
        raise fail(str(exc)) from None
    offline = models_offline_if_unreachable(runtime.settings)
    try:
        with progress() as bar:
            task = bar.add_task("Reindexing" if rebuild else "Embedding", total=runtime.journal.backlog())
            stats = memory.drain(on_progress=lambda n: bar.advance(task, n))
    except (EmbedderError, StoreError) as exc:
        raise fail(f"{exc}{HUB_UNREACHABLE if offline else ''}\n"
                   "The documents stay queued: run the ingest again, or start the gateway.") from None
    if stats.images_unusable:
        err.print(f"[yellow]{stats.images_unusable} image(s) could not be embedded (missing or undecodable)[/]")
    return True

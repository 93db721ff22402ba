"""The composition root: everything the gateway runs on, built once from the settings.

    runtime = Runtime.from_settings(settings)   # builds; opens nothing
    await runtime.start()                       # the upstream pool, memory (ingest, purge), then history's
                                                # finisher of deletions and retention sweeper
    ...
    await runtime.close()

The HTTP app (gateway.api.app), the CLI and the benchmarks all build their objects here, so each
object is made one way: the journal, the blob store, the image loader, the upstream pool, history
(always), memory (unless disabled) and the chat service that puts memory into answers.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from gateway.auth import Authenticator
from gateway.history.service import History
from gateway.images import ImageLoader
from gateway.journal import BlobStore, Journal, open_blobs, open_journal
from gateway.memory.service import Memory
from gateway.memory.store.base import VectorStore
from gateway.proxy.augment import Augmenter
from gateway.proxy.chat import ChatProxy
from gateway.proxy.recorder import Recorder
from gateway.proxy.upstream import UpstreamPool
from gateway.settings import Settings


@dataclass
class Runtime:
    settings: Settings
    auth: Authenticator
    journal: Journal
    blobs: BlobStore
    loader: ImageLoader
    pool: UpstreamPool
    chat: ChatProxy
    history: History
    memory: Memory | None

    @classmethod
    def from_settings(cls, settings: Settings, *, store: VectorStore | None = None) -> Runtime:
        """Build everything the settings ask for; nothing is opened or loaded until `start()`.
        `store` replaces the vector store the settings choose (tests)."""
        journal = open_journal(settings)
        blobs = open_blobs(settings)
        loader = ImageLoader.from_settings(settings)
        pool = UpstreamPool(
            settings.upstream_urls,
            api_key=settings.upstream_api_key.get_secret_value() if settings.upstream_api_key else None,
            connect_timeout_s=settings.upstream_connect_timeout_s,
            read_timeout_s=settings.upstream_read_timeout_s,
            health_interval_s=settings.upstream_health_interval_s,
        )
        memory = None
        if settings.memory_enabled:
            memory = Memory.from_settings(settings, journal, blobs, image_loader=loader, store=store)
        # With memory on, forgetting deletes the store's points too, and thumbnails are decoded within
        # the budget CLIP's decodes share.
        history = History.from_settings(settings, journal, blobs,
                                        decoder=memory.embedder.decoder if memory is not None else None,
                                        points=memory.points if memory is not None else None)
        chat = ChatProxy(
            pool, loader, Recorder(journal, blobs), settings.max_images_per_request,
            # Chats put memory into answers when asked (or by default), through the memory service; a
            # cited source's image comes from history.
            augmenter=Augmenter.from_settings(settings, memory, history, pool),
            default_model=settings.default_model,
        )
        auth = Authenticator(settings.tenants_by_key, settings.default_tenant, settings.admin_keys)
        return cls(settings, auth, journal, blobs, loader, pool, chat, history, memory)

    @classmethod
    def for_command(cls, settings: Settings, *, threads: int | None = None) -> Runtime:
        """For a process that serves nothing (a CLI command, a benchmark): memory is built even where the
        gateway runs without it, since the data dir's exchanges can still be searched, and forgetting
        deletes their points; `threads` replaces the models' thread count. Start nothing:
        `memory.open()` opens the store alone (no ingest worker, no background thread); `close()`
        closes what was opened."""
        update: dict[str, object] = {"memory_enabled": True}
        if threads is not None:
            update["embed_threads"] = threads
        return cls.from_settings(settings.model_copy(update=update))

    async def start(self) -> None:
        await self.pool.start()
        if self.memory is not None:
            # Opens the store: fails start-up with a clear error if another process holds it.
            await asyncio.to_thread(self.memory.start)
        # After the store is open (the finisher deletes points in it). A gateway on a shared journal
        # leaves deletions and retention to the workers.
        if self.settings.ingest_here:
            self.history.start()

    async def close(self) -> None:
        try:
            await self.history.stop()  # before the store closes; unfinished deletions stay recorded
            if self.memory is not None:
                await self.memory.stop()  # before the journal closes; unfinished work stays queued
        finally:
            await self.loader.fetcher.close()
            await self.pool.close()
            self.journal.close()

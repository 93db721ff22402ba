"""Memory changes a request only when it fully succeeded, and leaves no upstream slot behind.

The store is a double (`Store`): a store whose image read fails or stalls exactly between choosing the
sources and attaching their images cannot be arranged on demand with the real one (the real store and
vLLM are in tests/gateway/memory/test_chat_memory.py). The upstream is real TCP: a port where nothing listens
(token counts fall back to estimates), or a server that accepts and never answers (a stalled upstream).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from gateway.errors import NotFound
from gateway.history.service import StoredImage
from gateway.memory.retrieval import Source
from gateway.proxy.augment import AugmentConfig, Augmenter, ChatTurn, MemoryUse
from gateway.proxy.protocol import MemoryOptions
from gateway.proxy.tokens import TokenCounter
from gateway.proxy.upstream import UpstreamPool
from tests.gateway.memory.conftest import noise_png
from tests.plugins.gateway_server import free_port

SHA = "ab" * 32


class Store:
    """Finds one source with an image; its image read answers, fails (forgotten a moment before) or stalls."""

    def __init__(self, image: str = "ok", sources: int = 1) -> None:
        self.image_behaviour = image
        self.sources = sources

    async def recall(self, flt: Any, query: Any, *, k: int) -> list[Source]:
        await asyncio.sleep(0.05)  # the real one embeds and searches in a worker thread meanwhile
        return [Source(f"past-{i}", 0.5, "what is on the screen?", "a login form", 1767225600.0, "m", SHA)
                for i in range(self.sources)]

    async def image(self, tenant: str, sha256: str) -> StoredImage:
        if self.image_behaviour == "fails":
            raise NotFound("no such image")
        if self.image_behaviour == "stalls":
            await asyncio.sleep(3600)
        return StoredImage(noise_png(3), "image/png")


@contextlib.asynccontextmanager
async def pool_for(url: str) -> AsyncIterator[UpstreamPool]:
    pool = UpstreamPool([url], api_key=None, connect_timeout_s=1, read_timeout_s=30, health_interval_s=60)
    await pool.start()
    try:
        yield pool
    finally:
        await pool.close()


@contextlib.asynccontextmanager
async def stalled_upstream() -> AsyncIterator[tuple[str, list[int]]]:
    """A server that takes requests and never answers; the list counts connections."""
    connections: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        with contextlib.suppress(Exception):
            await reader.read()  # until the client hangs up
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/v1", connections
    finally:
        server.close()


def payload() -> dict[str, Any]:
    return {"model": "m", "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "what is on the screen?"}]},
    ]}


async def augment(store: Store, pool: UpstreamPool, body: dict[str, Any], timeout_s: float = 0.5) -> MemoryUse:
    config = AugmentConfig(timeout_s=timeout_s, attach_images=True)
    augmenter = Augmenter(store, TokenCounter(pool), config, max_images=4, images=store)
    turn = ChatTurn(tenant="t", exchange_id="now", user=None, question="what is on the screen?", images=[])
    return await augmenter.augment(body, turn, MemoryOptions(memory=True))


@pytest.mark.parametrize(("image", "reason"), [("fails", "unavailable"), ("stalls", "timeout")])
def test_a_failed_augmentation_leaves_the_request_as_the_client_sent_it(image: str, reason: str) -> None:
    async def run() -> tuple[MemoryUse, dict, int]:
        async with pool_for(f"http://127.0.0.1:{free_port()}/v1") as pool:
            body = payload()
            use = await augment(Store(image), pool, body)
            return use, body, pool.upstreams[0].outstanding

    use, body, outstanding = asyncio.run(run())
    assert use.reason == reason and use.cited == ()
    assert body == payload()  # nothing of the sources reached the request
    assert outstanding == 0


def test_a_successful_augmentation_puts_sources_and_images_in() -> None:
    async def run() -> tuple[MemoryUse, dict]:
        async with pool_for(f"http://127.0.0.1:{free_port()}/v1") as pool:
            body = payload()
            return await augment(Store("ok"), pool, body), body

    use, body = asyncio.run(run())
    assert use.reason == "used" and [c.n for c in use.cited] == [1]
    system, user = body["messages"]
    assert system["content"].startswith("Be brief.\n\nMemory: ")
    block, label, image, own = user["content"]
    assert block["text"].startswith("<memory-") and "[1] {" in block["text"]
    assert label == {"type": "text", "text": "Image of source [1]:"}
    assert image["image_url"]["url"].startswith("data:image/png;base64,")
    assert own == {"type": "text", "text": "what is on the screen?"}


def test_memory_without_sources_asks_the_upstream_nothing() -> None:
    async def run() -> tuple[list[MemoryUse], list[int], int]:
        async with stalled_upstream() as (url, connections), pool_for(url) as pool:
            uses = [await augment(Store(sources=0), pool, payload()) for _ in range(5)]
            await asyncio.sleep(0.1)
            return uses, connections, pool.upstreams[0].outstanding

    uses, connections, outstanding = asyncio.run(run())
    assert [u.reason for u in uses] == ["no_sources"] * 5
    assert connections == []  # no prompt count for a chat memory adds nothing to
    assert outstanding == 0


def test_a_request_cancelled_while_it_waits_gives_its_slot_back() -> None:
    async def run() -> tuple[int, int, int]:
        async with stalled_upstream() as (url, connections), pool_for(url) as pool:
            task = asyncio.create_task(pool.open("POST", "/tokenize", b"{}", root=True))
            while not connections:
                await asyncio.sleep(0.01)
            waiting = pool.upstreams[0].outstanding
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            # And when the time budget runs out while the sources are counted.
            use = await augment(Store(), pool, payload(), timeout_s=0.3)
            assert use.reason == "timeout"
            return waiting, pool.upstreams[0].outstanding, len(connections)

    waiting, outstanding, connections = asyncio.run(run())
    assert waiting == 1
    assert outstanding == 0
    assert connections >= 2


@contextlib.asynccontextmanager
async def counting_upstream() -> AsyncIterator[tuple[str, list[int]]]:
    """Answers /tokenize shaped like vLLM (every token id included, four characters a token, a context of
    2048) and records the size of each request: what the gateway sends to be counted is what this test
    is about, and a real vLLM does not report it."""
    sizes: list[int] = []

    async def tokenize(request: web.Request) -> web.Response:
        raw = await request.read()
        sizes.append(len(raw))
        count = max(1, len(raw) // 4)
        return web.json_response({"count": count, "max_model_len": 2048, "tokens": list(range(count))})

    app = web.Application(client_max_size=64 << 20)
    app.router.add_post("/tokenize", tokenize)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}/v1", sizes
    finally:
        await runner.cleanup()


def test_a_prompt_far_over_the_context_is_not_sent_to_be_counted() -> None:
    """An 8 MiB message with sources found: vLLM would answer with two million token ids (+150 MB of
    RSS and hundreds of ms to parse). The context learnt from a tiny request says it cannot fit."""
    async def run() -> tuple[MemoryUse, list[int], int]:
        async with counting_upstream() as (url, sizes), pool_for(url) as pool:
            body = payload()
            body["messages"][1]["content"][0]["text"] = "what is on the screen? " + "x" * (8 << 20)
            use = await augment(Store("ok"), pool, body, timeout_s=5)
            return use, sizes, pool.upstreams[0].outstanding

    use, sizes, outstanding = asyncio.run(run())
    assert use.reason == "no_room"
    assert sizes and max(sizes) < 16 << 10, sizes  # the context asked once, the sources counted; no prompt
    assert outstanding == 0

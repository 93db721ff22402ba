"""Thumbnails (gateway.history.thumbnails) are bounded like every other decode and never outlive their image.

Through the history routes' app, memory off and on (tests.gateway.history.conftest), and
`History.thumbnail`: one decode per image for every size, within the decode budget (with memory on,
the one CLIP's decodes share: see test_gateway), one render per image however many
first requests arrive at once, and a render that overlaps the image's deletion leaves nothing behind.
Renders are held at a gate (an Event in the original's read), not slowed by sleeps.
"""

from __future__ import annotations

import asyncio
import io
import threading
import time
from collections.abc import Callable

import pytest
from PIL import Image

from gateway.images import DecodeBudget
from gateway.journal import Exchange
from tests.gateway.history.conftest import A, Api, ingest


def rgba_png(seed: int, size: tuple[int, int] = (900, 600)) -> bytes:
    """A distinct RGBA PNG with a transparent corner."""
    image = Image.new("RGBA", size, (seed * 37 % 256, 90, 160, 255))
    image.paste((0, 0, 0, 0), (0, 0, size[0] // 4, size[1] // 4))
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def stored(api: Api, make_exchange, *images: bytes) -> list[str]:
    exchange: Exchange = make_exchange("q", "a", list(images), tenant="acme")
    ingest(api, exchange)
    return [image.sha256 for image in exchange.images]


def thumbnail(api: Api, sha: str, size: int):
    return api.client.get(f"/images/{sha}", headers=A, params={"size": size})


class GatedReads:
    """Stands in for the blob store's `get`: counts reads of originals and holds each at a gate."""

    def __init__(self, read: Callable[[str], bytes | None]) -> None:
        self.read = read
        self.calls: list[str] = []
        self.entered = threading.Event()
        self.gate = threading.Event()

    def __call__(self, sha: str) -> bytes | None:
        data = self.read(sha)
        self.calls.append(sha)
        self.entered.set()
        assert self.gate.wait(60), "the test never opened the gate"
        return data


def until(condition: Callable[[], bool], what: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def test_one_decode_makes_every_size_within_the_shared_budget(api: Api, make_exchange, monkeypatch) -> None:
    (sha,) = stored(api, make_exchange, rgba_png(1, (1200, 800)))
    budget = DecodeBudget(1 << 30)
    monkeypatch.setattr(api.history.thumbnails.decoder, "budget", budget)  # with memory on, CLIP's too
    reads = GatedReads(api.history.blobs.get)
    reads.gate.set()
    monkeypatch.setattr(api.history.blobs, "get", reads)

    for size in (64, 128, 256, 512):
        response = thumbnail(api, sha, size)
        assert response.status_code == 200, response.text
        with Image.open(io.BytesIO(response.content)) as thumb:
            assert max(thumb.size) == size and thumb.mode == "RGBA"  # transparency kept
    assert len(reads.calls) == 1  # the first request rendered all four sizes
    # The full-size raster and the premultiplied copy resizing an RGBA image takes were held.
    assert budget.peak_bytes == 1200 * 800 * 8 and budget.used == 0


def test_renders_wait_for_the_budget_and_each_other(api: Api, make_exchange, monkeypatch) -> None:
    shas = stored(api, make_exchange, *(rgba_png(n, (600, 400)) for n in range(6)))
    budget = DecodeBudget(600 * 400 * 8)  # one image's full-size working memory
    monkeypatch.setattr(api.history.thumbnails.decoder, "budget", budget)

    async def all_at_once() -> list:
        return await asyncio.gather(*(api.history.thumbnail("acme", sha, 128) for sha in shas))

    for result in asyncio.run(all_at_once()):
        with Image.open(io.BytesIO(result.data)) as thumb:
            assert thumb.size == (128, 85)
    assert budget.peak_running == 1 and budget.peak_bytes == budget.total


def test_concurrent_first_requests_share_one_render(api: Api, make_exchange, monkeypatch) -> None:
    (sha,) = stored(api, make_exchange, rgba_png(2))
    reads = GatedReads(api.history.blobs.get)
    monkeypatch.setattr(api.history.blobs, "get", reads)

    async def together() -> list:
        first = asyncio.create_task(api.history.thumbnail("acme", sha, 64))
        while not reads.entered.is_set():  # the first render holds the original, at the gate
            await asyncio.sleep(0.01)
        others = [asyncio.create_task(api.history.thumbnail("acme", sha, size)) for size in (128, 256, 512, 64)]
        await asyncio.sleep(0)
        reads.gate.set()
        return await asyncio.gather(first, *others)

    results = asyncio.run(together())
    assert [Image.open(io.BytesIO(r.data)).size[0] for r in results] == [64, 128, 256, 512, 64]
    assert reads.calls == [sha]


def test_a_thumbnail_rendered_while_its_image_is_forgotten_is_not_left_behind(
        api: Api, make_exchange, monkeypatch) -> None:
    exchange = make_exchange("q", "a", [rgba_png(3)], tenant="acme")
    ingest(api, exchange)
    sha = exchange.images[0].sha256
    reads = GatedReads(api.history.blobs.get)
    monkeypatch.setattr(api.history.blobs, "get", reads)
    answer: dict = {}
    request = threading.Thread(target=lambda: answer.setdefault("response", thumbnail(api, sha, 64)))
    request.start()
    try:
        assert reads.entered.wait(30)  # the render has read the original, and holds there
        assert api.client.delete(f"/exchanges/{exchange.id}", headers=A).status_code == 204
        # What the finisher thread does right after (the test app does not start it): the original and
        # the thumbnails go while the render holds the original's bytes.
        api.history.forgetter.finish()
        assert sha not in api.history.blobs
    finally:
        reads.gate.set()
        request.join(60)

    root = api.history.blobs.derived  # the disk blob store's folder of thumbnails
    assert [path for path in root.rglob("*") if path.is_file() and sha in path.name] == []
    assert answer["response"].status_code == 404
    assert thumbnail(api, sha, 64).status_code == 404


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_orientation_is_applied(api: Api, make_exchange, fmt: str) -> None:
    """EXIF orientation 6 (rotate 90 degrees): a landscape raster shown as a portrait."""
    image = Image.new("RGB", (900, 600), (200, 30, 30))
    exif = Image.Exif()
    exif[0x0112] = 6
    out = io.BytesIO()
    image.save(out, fmt, exif=exif.tobytes())
    (sha,) = stored(api, make_exchange, out.getvalue())
    with Image.open(io.BytesIO(thumbnail(api, sha, 128).content)) as thumb:
        assert thumb.size == (85, 128)


def test_palette_transparency_is_kept(api: Api, make_exchange) -> None:
    image = Image.new("P", (300, 200), 1)
    image.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    image.paste(0, (0, 0, 150, 200))  # its left half transparent
    out = io.BytesIO()
    image.save(out, "PNG", transparency=0)
    (sha,) = stored(api, make_exchange, out.getvalue())
    with Image.open(io.BytesIO(thumbnail(api, sha, 64).content)) as thumb:
        assert thumb.mode == "RGBA" and thumb.size == (64, 43)
        assert thumb.getpixel((5, 20))[3] == 0 and thumb.getpixel((58, 20))[3] == 255

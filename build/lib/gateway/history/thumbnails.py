"""Small copies of stored images, for grids of results: made once per image, kept in the blob store
beside the original (`BlobStore.put_derived`), so every replica reads the same ones and forgetting the
image deletes them wherever they are.

A grid of fifty results would otherwise download fifty originals. Only a few sizes exist (a request
is served at the next one up), so one image can never fill the disk with variants. Thumbnails are
WebP: small, and they keep transparency. They are addressed like the originals, by the original's
sha256, and never change; who may read one is decided by the caller (`History.thumbnail`), exactly as
for the original.

Bounded like every other decode (gateway.images): an original is decoded once for all sizes, holding
its full-size working memory in the gateway's shared decode budget only while the largest size is
made from it (the smaller ones are made from that one); at most `RENDERS` images render at once, and
concurrent first requests for one image wait for the same render.

Forgetting an image deletes the original, then its thumbnails; a render that read the original
before then would write its thumbnails after. So a render looks for the original again once its
thumbnails are stored and deletes them if it is gone: whichever comes second sees the other's work
(the blob stores read their own writes: a local folder, and S3 since its strong consistency).
"""

from __future__ import annotations

import asyncio
import io
from typing import TYPE_CHECKING

from anyio import to_thread
from PIL import Image, ImageOps

from gateway.images import heap
from gateway.images.decode import TRIM_AFTER_BYTES, default_decoder
from gateway.images.errors import ImageError
from gateway.images.raster import held_bytes_per_pixel
from gateway.images.verify import check_header

if TYPE_CHECKING:
    from gateway.images import DecodeBudget, ImageDecoder, ImagePolicy
    from gateway.journal import BlobStore

SIZES = (64, 128, 256, 512)
MIME = "image/webp"
# Each render holds a thread of the pool the routes' blocking work shares while it decodes or waits
# for the budget: a burst of first requests for many images must not take them all.
RENDERS = 4


def snap(size: int) -> int:
    """The stored size that serves a request for `size` px: the next one up, at most the largest."""
    return next((s for s in SIZES if s >= size), SIZES[-1])


def render(original: bytes, policy: ImagePolicy, budget: DecodeBudget) -> dict[int, bytes]:
    """`original` as WebP at every size of SIZES (the longer side at most that, never enlarged), from
    one decode. Raises ImageError."""
    try:
        image = Image.open(io.BytesIO(original))
        try:
            check_header(image, policy)
            # JPEGs decode at a fraction of their size directly, instead of full size then scaled.
            image.draft("RGB", (SIZES[-1], SIZES[-1]))
            cost = working_bytes(image)
            with budget.hold(cost):
                largest = _fit(_full_size(image), SIZES[-1])
        finally:
            image.close()  # the full-size raster, before anything else is allocated
        if cost >= TRIM_AFTER_BYTES:
            heap.trim()
        largest = ImageOps.exif_transpose(largest)
        return {size: _webp(largest if size == SIZES[-1] else _fit(largest, size)) for size in SIZES}
    except ImageError:
        raise
    except Exception as exc:  # noqa: BLE001 - Pillow raises many types for corrupt data
        raise ImageError(f"image cannot be decoded: {exc}") from None


def working_bytes(image: Image.Image) -> int:
    """What making the largest size allocates at `image`'s full (drafted) size: the raster, a copy
    converted to RGB(A) unless it is one already, and the premultiplied copy Pillow resizes an image
    with alpha through."""
    pixels = image.size[0] * image.size[1]
    copy = pixels * held_bytes_per_pixel("RGBA")
    return (pixels * held_bytes_per_pixel(image.mode) + (0 if image.mode in ("RGB", "RGBA") else copy)
            + (copy if _has_alpha(image) else 0))


def _has_alpha(image: Image.Image) -> bool:
    return "A" in image.getbands() or "transparency" in image.info


def _full_size(image: Image.Image) -> Image.Image:
    """The decoded raster, as RGB or RGBA (what WebP takes); a converted copy replaces the original."""
    image.seek(0)  # animated images: the first frame
    image.load()
    if image.mode in ("RGB", "RGBA"):
        return image
    converted = image.convert("RGBA" if _has_alpha(image) else "RGB")
    image.close()
    return converted


def _fit(image: Image.Image, edge: int) -> Image.Image:
    """A new image: `image` scaled so its longer side is at most `edge` (never enlarged)."""
    width, height = image.size
    scale = min(1.0, edge / max(width, height))
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    # Reduced by whole factors first, then filtered: as good as filtering the whole raster, far faster.
    return image.resize(size, Image.Resampling.LANCZOS, reducing_gap=2.0)


def _webp(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "WEBP", quality=80, method=4)
    return out.getvalue()


def name(size: int) -> str:
    """The derived object (BlobStore.put_derived) that holds the thumbnail of a stored size."""
    return f"{size}.webp"


class Thumbnails:
    def __init__(self, blobs: BlobStore, decoder: ImageDecoder | None = None, renders: int = RENDERS) -> None:
        self.blobs = blobs
        self.decoder = decoder or default_decoder()
        self._slots = asyncio.Semaphore(renders)
        self._flights: dict[str, asyncio.Future[dict[int, bytes] | None]] = {}

    async def get(self, sha256: str, size: int) -> bytes | None:
        """The stored thumbnail, made with every other size from the original on first use; None when
        there is no original. Raises ImageError when the original cannot be decoded, BlobUnavailable when
        the blob store fails."""
        size = snap(size)
        cached = await to_thread.run_sync(self._read, sha256, size)
        if cached is not None:
            return cached
        flight = self._flights.get(sha256)
        if flight is None:
            flight = asyncio.ensure_future(self._render(sha256))
            self._flights[sha256] = flight
            flight.add_done_callback(lambda done: self._landed(sha256, done))
        # Shielded: a caller that goes away does not cancel the render the others wait for.
        rendered = await asyncio.shield(flight)
        return None if rendered is None else rendered[size]

    def _read(self, sha256: str, size: int) -> bytes | None:
        return self.blobs.get_derived(sha256, name(size))

    async def _render(self, sha256: str) -> dict[int, bytes] | None:
        async with self._slots:
            return await to_thread.run_sync(self._make, sha256)

    def _landed(self, sha256: str, flight: asyncio.Future[dict[int, bytes] | None]) -> None:
        if self._flights.get(sha256) is flight:
            del self._flights[sha256]
        if not flight.cancelled():
            flight.exception()  # retrieved: every caller may have gone away

    def _make(self, sha256: str) -> dict[int, bytes] | None:
        # A request that missed the stored one just before another render landed finds that render's.
        landed = {size: data for size in SIZES if (data := self._read(sha256, size)) is not None}
        if len(landed) == len(SIZES):
            return landed
        original = self.blobs.get(sha256)
        if original is None:
            return None
        rendered = render(original, self.decoder.policy, self.decoder.budget)
        for size, data in rendered.items():
            self.blobs.put_derived(sha256, name(size), data)
        if sha256 not in self.blobs:  # forgotten meanwhile, maybe after it deleted the thumbnails
            self.blobs.delete_derived(sha256)
            return None
        return rendered

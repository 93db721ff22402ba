"""Small copies of stored images, for grids of results: made once per (image, size), kept on disk.

A grid of fifty results would otherwise download fifty originals. Only a few sizes exist (a request
is served at the next one up), so one image can never fill the disk with variants. Thumbnails are
WebP: small, and they keep transparency. They are addressed like the originals, by the original's
sha256, and never change; who may read one is decided by the caller (`Memory.thumbnail`), exactly as
for the original.
"""

from __future__ import annotations

import io
import os
import threading
from collections.abc import Callable
from pathlib import Path

from PIL import Image, ImageOps

SIZES = (64, 128, 256, 512)
MIME = "image/webp"


def snap(size: int) -> int:
    """The stored size that serves a request for `size` px: the next one up, at most the largest."""
    return next((s for s in SIZES if s >= size), SIZES[-1])


def render(original: bytes, size: int) -> bytes:
    """`original` scaled so its longer side is at most `size` px (never enlarged), as WebP."""
    with Image.open(io.BytesIO(original)) as image:
        # JPEGs decode at a fraction of their size directly, instead of full size then scaled.
        image.draft("RGB", (size, size))
        image.seek(0)  # animated images: the first frame
        image = ImageOps.exif_transpose(image)
        if image.mode not in ("RGB", "RGBA"):
            has_alpha = "A" in image.getbands() or "transparency" in image.info
            image = image.convert("RGBA" if has_alpha else "RGB")
        image.thumbnail((size, size), Image.Resampling.LANCZOS)
        out = io.BytesIO()
        image.save(out, "WEBP", quality=80, method=4)
        return out.getvalue()


class Thumbnails:
    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, sha256: str, size: int) -> Path:
        return self.root / str(size) / sha256[:2] / f"{sha256}.webp"

    def get(self, sha256: str, size: int, original: Callable[[], bytes | None]) -> bytes | None:
        """The cached thumbnail, made from `original()` on first use; None when there is no original.

        `sha256` must already be validated (it names a file). Written under a temporary name and renamed,
        so a concurrent reader never sees half a file; two first requests at once both render, harmlessly.
        """
        size = snap(size)
        target = self.path(sha256, size)
        try:
            return target.read_bytes()
        except FileNotFoundError:
            pass
        data = original()
        if data is None:
            return None
        thumbnail = render(data, size)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_bytes(thumbnail)
        os.replace(tmp, target)
        return thumbnail

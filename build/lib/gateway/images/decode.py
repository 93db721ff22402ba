"""Decode an image small: for a model that needs a few hundred pixels, not the full raster.

The full-resolution raster is held only as long as it takes to shrink it: JPEGs decode at 1/2 to
1/8 scale (`draft`), everything else is converted to 8-bit RGB and resized right after loading,
and the big buffers are freed before the next decode is let in (`DecodeBudget`).
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

from PIL import Image

from gateway.images import heap
from gateway.images.budget import DecodeBudget
from gateway.images.errors import ImageError
from gateway.images.raster import held_bytes_per_pixel
from gateway.images.verify import ImagePolicy, check_header

if TYPE_CHECKING:
    from gateway.settings import Settings

# After a decode this large, free arena memory is handed back at once.
TRIM_AFTER_BYTES = 16 * 1024 * 1024


def shortest_edge_size(size: tuple[int, int], edge: int) -> tuple[int, int]:
    """`size` scaled so its shorter side is `edge` (never enlarged), rounded as CLIP preprocessors do."""
    width, height = size
    short, long = min(width, height), max(width, height)
    if short <= edge:
        return size
    scaled_long = int(edge * long / short)
    return (edge, scaled_long) if width <= height else (scaled_long, edge)


def working_bytes(image: Image.Image) -> int:
    """What decoding `image` at its current (drafted) size allocates: the raster, and an RGB copy unless
    it is RGB already."""
    pixels = image.size[0] * image.size[1]
    copy = 0 if image.mode == "RGB" else pixels * held_bytes_per_pixel("RGB")
    return pixels * held_bytes_per_pixel(image.mode) + copy


class ImageDecoder:
    def __init__(self, policy: ImagePolicy, budget: DecodeBudget) -> None:
        self.policy = policy
        self.budget = budget
        heap.mmap_large_blocks()

    @classmethod
    def from_settings(cls, settings: Settings) -> ImageDecoder:
        return cls(ImagePolicy.from_settings(settings), DecodeBudget(settings.image_decode_budget_bytes))

    def rgb(self, data: bytes, shortest_edge: int) -> Image.Image:
        """8-bit RGB with its shorter side at most `shortest_edge`. Raises ImageError."""
        try:
            image = Image.open(io.BytesIO(data))
            check_header(image, self.policy)
            size = shortest_edge_size(image.size, shortest_edge)
            image.draft("RGB", size)
            cost = working_bytes(image)
            with self.budget.hold(cost):
                small = _shrink(image, size)
        except ImageError:
            raise
        except Exception as exc:  # noqa: BLE001 - Pillow raises many types for corrupt data
            raise ImageError(f"image cannot be decoded: {exc}") from None
        if cost >= TRIM_AFTER_BYTES:
            heap.trim()
        return small


def default_decoder() -> ImageDecoder:
    """The settings' default limits, for decoders built outside the gateway (tests, benchmarks)."""
    from gateway.settings import Settings

    defaults = Settings.model_fields
    policy = ImagePolicy(defaults["max_image_bytes"].default, defaults["max_image_pixels"].default,
                         frozenset(), defaults["max_image_decoded_bytes"].default)
    return ImageDecoder(policy, DecodeBudget(defaults["image_decode_budget_bytes"].default))


def _shrink(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    image.load()
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    if rgb is not image:
        image.close()  # the decoded raster goes before the resize allocates anything
    if rgb.size == size:
        return rgb
    small = rgb.resize(size, Image.Resampling.BICUBIC)
    rgb.close()
    return small

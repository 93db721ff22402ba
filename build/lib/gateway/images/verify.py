"""Is it really an image we accept? Pillow reads the header and checks the file's integrity.

Nothing is decoded here: `verify()` walks PNG chunks checking their CRCs and is a no-op for the
other formats, so what decoding would cost is judged from the header (`check_header`), which the
decoder (images.decode) applies again before it allocates anything.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

from PIL import Image

from gateway.images.errors import ImageError
from gateway.images.raster import bytes_per_pixel

if TYPE_CHECKING:
    from gateway.settings import Settings

# Our own pixel limit is checked before anything is decoded; Pillow's global one would
# otherwise warn or raise with its own (different) threshold.
Image.MAX_IMAGE_PIXELS = None


@dataclass(frozen=True, slots=True)
class ImagePolicy:
    max_bytes: int
    max_pixels: int
    formats: frozenset[str]
    max_decoded_bytes: int = 144_000_000

    @classmethod
    def from_settings(cls, settings: Settings) -> ImagePolicy:
        return cls(settings.max_image_bytes, settings.max_image_pixels, frozenset(settings.image_formats),
                   settings.max_image_decoded_bytes)


@dataclass(frozen=True, slots=True)
class ImageInfo:
    format: str
    mime: str
    width: int
    height: int


def verify_image(data: bytes, policy: ImagePolicy) -> ImageInfo:
    if not data:
        raise ImageError("image is empty")
    if len(data) > policy.max_bytes:
        raise ImageError(f"image is larger than the {policy.max_bytes}-byte limit", code="image_too_large")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            fmt = image.format or ""
            width, height = image.size
            if fmt not in policy.formats:
                raise ImageError(
                    f"image format {fmt or 'unknown'} is not accepted; use one of "
                    + ", ".join(sorted(policy.formats)),
                    code="unsupported_image_format",
                )
            # Header only so far: refuse decompression bombs before verify() touches the data.
            check_header(image, policy)
            image.verify()
    except ImageError:
        raise
    except Image.UnidentifiedImageError:
        raise ImageError("not an image: Pillow cannot identify the data") from None
    except Exception as exc:  # noqa: BLE001 - Pillow raises many types for corrupt files.
        raise ImageError(f"corrupt image: {exc}") from None
    return ImageInfo(fmt, Image.MIME.get(fmt, "application/octet-stream"), width, height)


def check_header(image: Image.Image, policy: ImagePolicy) -> None:
    """Refuse, from the header alone, an image whose pixels or decoded bytes are over the limits."""
    width, height = image.size
    if width * height > policy.max_pixels:
        raise ImageError(
            f"image is {width}x{height} pixels, over the {policy.max_pixels}-pixel limit",
            code="image_too_large",
        )
    per_pixel = bytes_per_pixel(image)
    if width * height * per_pixel > policy.max_decoded_bytes:
        raise ImageError(
            f"image decodes to {width * height * per_pixel} bytes ({width}x{height} pixels, {per_pixel} bytes "
            f"per pixel), over the {policy.max_decoded_bytes}-byte limit; send it smaller or with 8-bit channels",
            code="image_too_large",
        )

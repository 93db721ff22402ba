"""What an image costs once decoded, read from its header alone (nothing is decoded here)."""

from __future__ import annotations

from PIL import Image, ImageMode


def held_bytes_per_pixel(mode: str) -> int:
    """Bytes per pixel Pillow allocates for `mode`: 8-bit multi-band images take 4 (RGB is stored RGBX)."""
    try:
        desc = ImageMode.getmode(mode)
    except KeyError:
        return 4
    sample = int(desc.typestr[-1])
    if sample > 1:
        return sample * len(desc.bands)
    return 1 if len(desc.bands) == 1 else 4


def source_bytes_per_pixel(image: Image.Image) -> int:
    """Bytes per pixel of the file's own samples when they are 16-bit (0 otherwise).

    Pillow narrows 16-bit RGB(A) to 8 bits as it decodes, so its mode hides them; the raw mode of the
    first tile (`RGBA;16B`, `I;16B`) still names them.
    """
    for tile in image.tile[:1]:
        args = tile.args if isinstance(tile.args, tuple) else (tile.args,)
        raw = next((a for a in args if isinstance(a, str)), "")
        base, _, depth = raw.partition(";")
        if depth.startswith("16"):
            return 2 * len(base)
    return 0


def bytes_per_pixel(image: Image.Image) -> int:
    """The larger of the file's own samples and what Pillow holds."""
    return max(held_bytes_per_pixel(image.mode), source_bytes_per_pixel(image))


def decoded_bytes(image: Image.Image) -> int:
    width, height = image.size
    return width * height * bytes_per_pixel(image)


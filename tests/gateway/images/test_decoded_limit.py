"""The decoded-bytes limit: judged from the header, so a small file with a deep raster is refused
before anything is decoded, while ordinary images (up to 36 Mpx of 8-bit RGB or RGBA) pass."""

from __future__ import annotations

import asyncio
import io
from functools import cache

import pytest
from PIL import Image

from gateway.images import ImageError, ImageLoader, ImagePolicy
from gateway.images.raster import bytes_per_pixel, decoded_bytes
from gateway.images.verify import verify_image
from gateway.settings import Settings
from tests.gateway.images.deep_png import deep_png
from tests.plugins.media import data_url

DEFAULTS = ImagePolicy.from_settings(Settings(_env_file=None))


@cache
def hostile() -> bytes:
    return deep_png(6000, 6000, depth=16, color_type=6)


def test_the_defaults_are_36_megapixels_of_8bit_rgb_and_twice_that_for_the_decode_budget():
    settings = Settings(_env_file=None)
    assert settings.max_image_decoded_bytes == 36_000_000 * 4 == DEFAULTS.max_decoded_bytes
    assert settings.image_decode_budget_bytes == 2 * settings.max_image_decoded_bytes


@pytest.mark.parametrize("depth, color_type, mode, per_pixel", [
    (16, 6, "RGBA", 8),   # Pillow narrows it to 8-bit RGBA; the file's raster is 8 bytes a pixel
    (16, 2, "RGB", 6),
    (16, 4, "RGBA", 4),   # 16-bit grey + alpha
    (16, 0, "I;16", 2),
    (8, 6, "RGBA", 4),
    (8, 2, "RGB", 4),     # Pillow holds RGB as RGBX
    (8, 0, "L", 1),
])
def test_bytes_per_pixel_from_the_header(depth, color_type, mode, per_pixel):
    image = Image.open(io.BytesIO(deep_png(8, 4, depth, color_type)))
    assert image.mode == mode
    assert bytes_per_pixel(image) == per_pixel
    assert decoded_bytes(image) == 8 * 4 * per_pixel


def test_the_hostile_16bit_rgba_png_is_refused_before_decoding():
    data = hostile()
    assert len(data) < 400_000  # small on the wire...
    before = Image.core.get_stats()["new_count"]
    with pytest.raises(ImageError) as caught:
        verify_image(data, DEFAULTS)
    assert caught.value.code == "image_too_large"
    assert caught.value.message == (
        "image decodes to 288000000 bytes (6000x6000 pixels, 8 bytes per pixel), over the 144000000-byte "
        "limit; send it smaller or with 8-bit channels"
    )
    assert Image.core.get_stats()["new_count"] == before  # ...and no raster was ever allocated


def test_the_loader_refuses_it_with_the_same_code_for_chat_and_search():
    async def load() -> ImageError:
        loader = ImageLoader.from_settings(Settings(_env_file=None))
        try:
            with pytest.raises(ImageError) as caught:
                await loader.load(data_url(hostile()))
            return caught.value
        finally:
            await loader.fetcher.close()

    refused = asyncio.run(load())
    assert refused.code == "image_too_large"
    assert "288000000 bytes" in refused.message


@pytest.mark.parametrize("width, height, depth, color_type", [
    (6000, 6000, 8, 6),    # 36 Mpx 8-bit RGBA: exactly the limit
    (6000, 6000, 8, 2),    # 36 Mpx 8-bit RGB
    (6000, 6000, 16, 0),   # 36 Mpx 16-bit grey: 72 MB
    (4242, 4242, 16, 6),   # the largest square 16-bit RGBA under the limit
    (1024, 768, 16, 2),    # an ordinary 16-bit photo
])
def test_images_within_the_defaults_pass(width, height, depth, color_type):
    info = verify_image(deep_png(width, height, depth, color_type), DEFAULTS)
    assert (info.width, info.height, info.format) == (width, height, "PNG")


def test_a_jpeg_at_the_pixel_limit_passes():
    buf = io.BytesIO()
    Image.new("RGB", (6000, 6000), (10, 20, 30)).save(buf, "JPEG")
    assert verify_image(buf.getvalue(), DEFAULTS).width == 6000


def test_the_pixel_limit_still_applies_first():
    policy = ImagePolicy(DEFAULTS.max_bytes, 1_000_000, DEFAULTS.formats, DEFAULTS.max_decoded_bytes)
    with pytest.raises(ImageError, match="over the 1000000-pixel limit") as caught:
        verify_image(deep_png(2000, 1000, 8, 0), policy)
    assert caught.value.code == "image_too_large"

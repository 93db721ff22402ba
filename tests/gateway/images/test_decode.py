"""Decoding for a model: small RGB out, the full raster held briefly and under the shared budget."""

from __future__ import annotations

import io
import threading

import pytest
from PIL import Image

from gateway.images import DecodeBudget, ImageDecoder, ImageError, ImagePolicy
from gateway.images.decode import shortest_edge_size, working_bytes
from gateway.settings import Settings
from tests.gateway.images.deep_png import deep_png
from tests.plugins.media import png_bytes

DEFAULTS = ImagePolicy.from_settings(Settings(_env_file=None))


def decoder(budget_bytes: int = 288_000_000, policy: ImagePolicy = DEFAULTS) -> ImageDecoder:
    return ImageDecoder(policy, DecodeBudget(budget_bytes))


def jpeg(size: tuple[int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (120, 60, 30)).save(buf, "JPEG")
    return buf.getvalue()


@pytest.mark.parametrize("size, edge, expected", [
    ((6000, 4000), 224, (336, 224)),
    ((4000, 6000), 224, (224, 336)),
    ((225, 1000), 224, (224, 995)),
    ((100, 50), 224, (100, 50)),   # never enlarged: the model's preprocessing does that on its own
])
def test_shortest_edge_size(size, edge, expected):
    assert shortest_edge_size(size, edge) == expected


def test_a_large_16bit_rgba_png_comes_out_small_8bit_rgb():
    image = decoder().rgb(deep_png(4242, 4242, 16, 6), 224)
    assert (image.mode, image.size) == ("RGB", (224, 224))


def test_what_a_decode_holds_is_charged_and_given_back():
    png = deep_png(4000, 3000, 8, 6)
    source = Image.open(io.BytesIO(png))
    assert working_bytes(source) == 4000 * 3000 * (4 + 4)  # the RGBA raster and its RGB copy
    dec = decoder()
    assert dec.rgb(png, 224).size == (298, 224)
    assert dec.budget.peak_bytes == 4000 * 3000 * 8
    assert dec.budget.used == 0


def test_jpegs_decode_at_a_reduced_scale():
    dec = decoder()
    image = dec.rgb(jpeg((4000, 3000)), 224)
    assert image.size == (298, 224)
    # draft() decoded it at 1/8 scale (500x375, RGB): a 64th of the full raster was ever allocated.
    assert dec.budget.peak_bytes == 500 * 375 * 4


def test_a_small_rgb_image_is_returned_as_decoded():
    image = decoder().rgb(png_bytes((40, 30)), 224)
    assert (image.mode, image.size) == ("RGB", (40, 30))


@pytest.mark.parametrize("mode", ["L", "P", "LA", "I;16", "CMYK", "1"])
def test_every_mode_comes_out_rgb(mode):
    buf = io.BytesIO()
    Image.new(mode, (500, 300)).save(buf, "TIFF" if mode == "CMYK" else "PNG")
    assert decoder().rgb(buf.getvalue(), 224).mode == "RGB"


def test_over_the_limits_is_refused_from_the_header_without_allocating():
    dec = decoder()
    before = Image.core.get_stats()["new_count"]
    with pytest.raises(ImageError) as caught:
        dec.rgb(deep_png(6000, 6000, 16, 6), 224)
    assert caught.value.code == "image_too_large"
    assert Image.core.get_stats()["new_count"] == before
    assert dec.budget.peak_bytes == 0


def test_corrupt_data_is_an_image_error_and_gives_its_bytes_back():
    dec = decoder()
    truncated = png_bytes((300, 300))[:-200]
    with pytest.raises(ImageError, match="cannot be decoded"):
        dec.rgb(truncated, 224)
    with pytest.raises(ImageError):
        dec.rgb(b"not an image", 224)
    assert dec.budget.used == 0


def test_concurrent_decodes_share_one_budget():
    png = deep_png(3000, 3000, 8, 6)  # 72 MB each to decode: a budget of 100 MB lets one in at a time
    dec = decoder(budget_bytes=100_000_000)
    sizes: list[tuple[int, int]] = []
    threads = [threading.Thread(target=lambda: sizes.append(dec.rgb(png, 224).size)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sizes == [(224, 224)] * 4
    assert dec.budget.peak_running == 1 and dec.budget.peak_bytes == 72_000_000

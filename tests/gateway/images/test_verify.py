import io

import pytest
from PIL import Image

from gateway.images import ImageError, ImagePolicy
from gateway.images.dataurl import decode_data_url, encode_data_url
from gateway.images.verify import verify_image
from tests.plugins.media import png_bytes

POLICY = ImagePolicy(max_bytes=1_000_000, max_pixels=1_000_000, formats=frozenset({"PNG", "JPEG"}))


def test_png_is_accepted_with_its_type_and_size():
    info = verify_image(png_bytes((40, 30)), POLICY)
    assert (info.format, info.mime, info.width, info.height) == ("PNG", "image/png", 40, 30)


def test_data_url_round_trip():
    data = png_bytes()
    assert decode_data_url(encode_data_url(data, "image/png"), 10_000) == data


@pytest.mark.parametrize("url, code", [
    ("data:image/png;base64,!!notbase64!!", "invalid_base64"),
    ("data:image/png;base64,aGVsbG8", "invalid_base64"),  # bad padding
    ("data:image/png,rawbytes", "invalid_image"),
    ("data:image/png;base64", "invalid_image"),
])
def test_malformed_data_urls_are_refused(url, code):
    with pytest.raises(ImageError) as caught:
        decode_data_url(url, 10_000)
    assert caught.value.code == code


def test_oversized_data_url_is_refused_before_decoding():
    with pytest.raises(ImageError) as caught:
        decode_data_url("data:image/png;base64," + "A" * 40_000, 10_000)
    assert caught.value.code == "image_too_large"


def test_non_image_bytes_are_refused():
    with pytest.raises(ImageError, match="not an image"):
        verify_image(b"%PDF-1.7 definitely not a picture", POLICY)


def test_truncated_png_is_refused():
    with pytest.raises(ImageError):
        verify_image(png_bytes()[:60], POLICY)


def test_format_outside_the_allowed_list_is_refused():
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, "GIF")
    with pytest.raises(ImageError) as caught:
        verify_image(buf.getvalue(), POLICY)
    assert caught.value.code == "unsupported_image_format"


def test_decompression_bomb_is_refused_from_its_header():
    # 4000x4000 of one colour: ~20 KB of PNG that would decode to 48 MB.
    buf = io.BytesIO()
    Image.new("RGB", (4000, 4000)).save(buf, "PNG")
    assert len(buf.getvalue()) < 100_000
    with pytest.raises(ImageError, match="pixel limit") as caught:
        verify_image(buf.getvalue(), POLICY)
    assert caught.value.code == "image_too_large"

"""`data:` URLs (RFC 2397), as OpenAI clients send images inline."""

from __future__ import annotations

import binascii

import pybase64

from gateway.images.errors import ImageError


def decode_data_url(url: str, max_bytes: int) -> bytes:
    """Return the bytes of a base64 `data:` URL, refusing anything malformed or too large."""
    header, sep, payload = url.partition(",")
    if not sep:
        raise ImageError("data URL has no ',' separating its header from its data")
    if not header.endswith(";base64"):
        raise ImageError("data URL must be base64-encoded (data:image/png;base64,...)")
    # base64 is 4/3 the size of the bytes: refuse before decoding a huge string.
    if len(payload) * 3 // 4 > max_bytes + 3:
        raise ImageError(f"image is larger than the {max_bytes}-byte limit", code="image_too_large")
    try:
        # pybase64 (SIMD) decodes ~40x faster than the standard library; validate=True is strict.
        data = pybase64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ImageError(f"data URL is not valid base64: {exc}", code="invalid_base64") from None
    if len(data) > max_bytes:
        raise ImageError(f"image is larger than the {max_bytes}-byte limit", code="image_too_large")
    return data


def encode_data_url(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{pybase64.b64encode(data).decode('ascii')}"

"""PNGs Pillow cannot write: 16-bit samples, any size, compressed to almost nothing.

A flat raster deflates ~1000:1, so a 6000x6000 16-bit RGBA image is a ~280 KB file: the hostile
image of issue 7 (small on the wire, 288 MB decoded).
"""

from __future__ import annotations

import struct
import zlib

CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}  # PNG colour type -> samples per pixel


def deep_png(width: int, height: int, depth: int = 16, color_type: int = 6) -> bytes:
    row = b"\x00" + bytes(width * CHANNELS[color_type] * depth // 8)  # filter byte + a black row
    packer = zlib.compressobj(9)
    idat = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    header = struct.pack(">IIBBBBB", width, height, depth, color_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

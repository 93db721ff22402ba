"""Test images and a local image server (the gateway's http fetches stay on loopback)."""

from __future__ import annotations

import base64
import http.server
import io
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from PIL import Image


def png_bytes(size: tuple[int, int] = (64, 64), color: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    buf = io.BytesIO()
    image = Image.new("RGB", size, color)
    # A few distinct pixels so different colours give different images and hashes.
    for x in range(0, size[0], 7):
        image.putpixel((x, x % size[1]), (x % 256, 255 - x % 256, 90))
    image.save(buf, "PNG")
    return buf.getvalue()


def data_url(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def image_message(url: str, text: str = "What does this diagram show?") -> list[dict]:
    return [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}},
                                         {"type": "text", "text": text}]}]


@dataclass
class ImageServer:
    """Serves fixed bodies on 127.0.0.1; `routes` maps a path to (status, headers, body)."""

    host: str
    port: int
    routes: dict[str, tuple[int, dict[str, str], bytes]]

    @property
    def hostport(self) -> str:
        return f"{self.host}:{self.port}"

    def url(self, path: str) -> str:
        return f"http://{self.host}:{self.port}{path}"


@pytest.fixture
def image_server() -> Iterator[ImageServer]:
    routes: dict[str, tuple[int, dict[str, str], bytes]] = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status, headers, body = routes.get(self.path, (404, {}, b"not found"))
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield ImageServer("127.0.0.1", server.server_address[1], routes)
    server.shutdown()
    server.server_close()

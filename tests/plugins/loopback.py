"""A loopback listener that would serve an image and counts every TCP connection made to it.

Tests send media URLs that point here to prove that nothing (vLLM, or the gateway when not allowed)
fetched them: `listener.connections` stays empty.
"""

from __future__ import annotations

import http.server
import socketserver
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import pytest

from tests.plugins.media import png_bytes


@dataclass
class Listener:
    port: int
    connections: list[tuple[str, int]] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)

    def url(self, path: str = "/diagram.png") -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@contextmanager
def serve_listener() -> Iterator[Listener]:
    body = png_bytes()
    record = Listener(port=0)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            record.paths.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
        daemon_threads = True

        def get_request(self):  # type: ignore[no-untyped-def]
            sock, address = super().get_request()
            record.connections.append(address)
            return sock, address

    server = Server(("127.0.0.1", 0), Handler)
    record.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield record
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def listener() -> Iterator[Listener]:
    with serve_listener() as record:
        yield record

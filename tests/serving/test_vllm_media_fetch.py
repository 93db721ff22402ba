"""The tiny profile makes the real vLLM 0.32 server refuse to fetch media itself.

Requests go straight to vLLM (not through the gateway), as anyone who could reach its port would
send them. The media URLs point at a loopback listener that would serve a valid PNG: had vLLM
fetched, the chat would succeed. The listener counts TCP connections, so a refused TLS handshake
or an aborted request counts too.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.plugins.loopback import Listener
from tests.plugins.media import data_url, png_bytes
from tests.plugins.vllm_server import VllmServer


def chat(url: str, model: str) -> dict:
    return {
        "model": model,
        "max_tokens": 4,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "what is this"},
                                                  {"type": "image_url", "image_url": {"url": url}}]}],
    }  # fmt: skip


def remote_urls(port: int) -> dict[str, str]:
    return {
        "http loopback": f"http://127.0.0.1:{port}/diagram.png",
        "http localhost name": f"http://localhost:{port}/diagram.png",
        "https loopback": f"https://127.0.0.1:{port}/diagram.png",
        # Upper case in the URL: urllib3 lower-cases it, so it cannot equal the allow-list entry.
        "the allow-list entry itself": f"http://MEDIA-FETCHING-DISABLED.INVALID:{port}/diagram.png",
    }


def test_listener_serves_an_image_when_asked(listener: Listener) -> None:
    # The control: the listener does answer, so silence below means vLLM never asked.
    response = httpx.get(f"http://127.0.0.1:{listener.port}/diagram.png", timeout=5)
    assert response.status_code == 200 and response.content.startswith(b"\x89PNG")
    assert len(listener.connections) == 1


@pytest.mark.parametrize("route", ["/v1/chat/completions", "/invocations"])
def test_vllm_refuses_http_media_urls(vllm_server: VllmServer, listener: Listener, route: str) -> None:
    # /invocations (SageMaker's route) takes no API key even with --api-key: the profile must hold there too.
    for case, url in remote_urls(listener.port).items():
        response = httpx.post(vllm_server.root_url + route, json=chat(url, vllm_server.model), timeout=60)
        assert 400 <= response.status_code < 500, (case, response.status_code, response.text[:300])
        assert "allowed domains" in response.json()["error"]["message"], (case, response.text[:300])
    assert listener.connections == [] and listener.paths == []


def test_vllm_refuses_local_files(vllm_server: VllmServer, tmp_path: Path) -> None:
    image = tmp_path / "diagram.png"
    image.write_bytes(png_bytes())
    for url in (image.as_uri(), "file:///etc/hostname"):
        response = httpx.post(vllm_server.base_url + "/chat/completions",
                              json=chat(url, vllm_server.model), timeout=60)  # fmt: skip
        # vLLM 0.32 raises RuntimeError here, which it answers as 500 (not 4xx): a refusal all the
        # same; the gateway refuses file:// URLs itself before vLLM sees them.
        assert response.status_code in (400, 500), (url, response.status_code, response.text[:300])
        assert "without `--allowed-local-media-path`" in response.json()["error"]["message"], response.text[
            :300
        ]


def test_inline_images_still_work(vllm_server: VllmServer, listener: Listener) -> None:
    # The gateway sends every image as a data: URL; refusing remote media must not break that.
    response = httpx.post(vllm_server.base_url + "/chat/completions",
                          json=chat(data_url(png_bytes()), vllm_server.model), timeout=60)  # fmt: skip
    assert response.status_code == 200, response.text[:300]
    assert response.json()["choices"][0]["message"]["content"]
    assert listener.connections == []

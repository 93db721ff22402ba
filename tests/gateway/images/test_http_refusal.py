"""Over HTTP: the whole gateway (in-process, memory on with the tiny CLIP) refuses the issue's small
16-bit PNG on /search and on chats with 400 `image_too_large`, and still answers ordinary images.

The upstream is a port where nothing listens: a chat refused for its image never reaches it.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from tests.gateway.images.deep_png import deep_png
from tests.gateway.inprocess import gateway, settings_for
from tests.plugins.media import data_url, image_message, png_bytes

TINY_CLIP = Path(__file__).resolve().parents[3] / "models" / "clip-tiny"


def test_search_and_chat_refuse_the_deep_png_and_search_answers_an_ordinary_one(tmp_path, monkeypatch):
    if not (TINY_CLIP / ".built").exists():
        pytest.fail("the tiny CLIP is missing: run `make memory-test-deps`")
    monkeypatch.setitem(os.environ, "HF_HUB_OFFLINE", "1")
    settings = settings_for(tmp_path, memory_enabled=True, fastembed_cache_dir=TINY_CLIP,
                            qdrant_local_path=tmp_path / "qdrant")
    hostile = data_url(deep_png(6000, 6000, 16, 6))

    async def scenario():
        async with gateway(settings) as (_, client):
            search = await client.post("/search", json={"image": hostile})
            chat = await client.post("/v1/chat/completions", json={"model": "m", "messages": image_message(hostile)})
            ordinary = await client.post("/search", json={"image": data_url(png_bytes((800, 600)))})
            return search, chat, ordinary

    search, chat, ordinary = asyncio.run(scenario())
    for refused in (search, chat):
        assert refused.status_code == 400, refused.text
        error = refused.json()["error"]
        assert error["code"] == "image_too_large"
        assert "decodes to 288000000 bytes" in error["message"]
    assert search.json()["error"]["param"] == "image"
    assert ordinary.status_code == 200, ordinary.text
    assert ordinary.json()["query_type"] == "image" and ordinary.json()["data"] == []

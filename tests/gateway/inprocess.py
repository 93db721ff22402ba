"""The whole gateway app in this process (httpx's ASGI transport), for tests that need no model.

Settings are the real ones; the upstream is whatever URL the test gives (by default a port where
nothing listens), memory is off unless asked for. The lifespan runs as in uvicorn.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI

from gateway.api.app import create_app
from gateway.settings import Settings
from tests.plugins.gateway_server import free_port


def settings_for(data_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {"data_dir": data_dir, "memory_enabled": False,
                              "upstream_urls": [f"http://127.0.0.1:{free_port()}/v1"]}
    return Settings(_env_file=None, **{**values, **overrides})


@asynccontextmanager
async def gateway(settings: Settings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            yield app, client

"""The application factory: `uvicorn gateway.app:create_app --factory`.

Everything is wired here, once: the request path (`Services`: journal, images, upstreams) and,
unless disabled, the memory path (`Memory`: CLIP embedding, Qdrant, search) reading the journal.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from gateway.deps import wire
from gateway.errors import install_error_handlers
from gateway.logs import configure as configure_logging
from gateway.memory.routes import router as memory_router
from gateway.memory.service import Memory
from gateway.metrics import MetricsMiddleware
from gateway.metrics_route import router as metrics_router
from gateway.openapi import install_openapi
from gateway.proxy.routes import router as proxy_router
from gateway.services import Services
from gateway.settings import Settings
from gateway.ui.routes import router as ui_router


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    configure_logging(settings.log_format)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services = Services.from_settings(settings)
        await services.start()
        memory: Memory | None = None
        try:
            if settings.memory_enabled:
                memory = Memory.from_settings(settings, services.journal, services.blobs,
                                              image_loader=services.loader)
                # Opens the store: fails start-up with a clear error if another process holds it.
                await asyncio.to_thread(memory.start)
            wire(app, settings=settings, auth=services.auth, chat=services.chat, memory=memory,
                 services=services)
            yield
        finally:
            if memory is not None:
                await memory.stop()  # before the journal closes; unfinished work stays queued
            await services.close()

    app = FastAPI(
        title="VisionRAG gateway",
        summary="OpenAI-compatible vision gateway that records and searches every exchange.",
        version="0.1.0",
        lifespan=lifespan,
        docs_url=None,  # gateway.openapi serves /docs without a CDN
        redoc_url=None,
    )
    install_error_handlers(app)
    app.include_router(proxy_router)
    app.include_router(memory_router)
    app.include_router(metrics_router)
    app.include_router(ui_router)
    install_openapi(app, settings)
    app.add_middleware(MetricsMiddleware)
    return app

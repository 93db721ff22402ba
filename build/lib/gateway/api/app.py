"""The application factory: `uvicorn gateway.api.app:create_app --factory`.

The HTTP edge only: the runtime (gateway.runtime) builds everything the routes call; this module
includes the routes, the error mapping, the OpenAPI document and the metrics middleware, and hands the
runtime's services to the routes' dependencies (gateway.api.deps).
"""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from gateway.api import chat, history, memory, operations, ui
from gateway.api.deps import wire
from gateway.api.errors import install_error_handlers
from gateway.api.openapi import install_openapi
from gateway.logs import configure as configure_logging
from gateway.metrics import MetricsMiddleware
from gateway.runtime import Runtime
from gateway.settings import Settings


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    configure_logging(settings.log_format)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = Runtime.from_settings(settings)
        try:
            await runtime.start()
            wire(app, settings=settings, auth=runtime.auth, chat=runtime.chat, history=runtime.history,
                 memory=runtime.memory)
            _settle_heap()
            yield
        finally:
            await runtime.close()

    app = FastAPI(
        title="VisionRAG gateway",
        summary="OpenAI-compatible vision gateway that records and searches every exchange.",
        version="0.1.0",
        lifespan=lifespan,
        docs_url=None,  # gateway.api.openapi serves /docs without a CDN
        redoc_url=None,
        # FastAPI's OpenTelemetry instrumentation would act only once an OpenTelemetry SDK configured
        # providers, and the gateway installs none (its telemetry is /metrics and the logs); left on, it
        # still asked the OpenTelemetry API for three providers on every request to find that out.
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
    )
    install_error_handlers(app)
    app.include_router(chat.router)
    app.include_router(memory.router)
    app.include_router(history.router)
    app.include_router(operations.router)
    app.include_router(ui.router)
    install_openapi(app, settings)
    app.add_middleware(MetricsMiddleware)
    return app


# Whether _settle_heap ran in this process.
_heap_settled = False

# New objects between collections of the youngest generation (Python's default is 700).
_YOUNG_COLLECTION_OBJECTS = 10_000


def _settle_heap() -> None:
    """Once per process, when the first app has started: the cyclic garbage collector's work is taken off
    the request path.

    What start-up built (routes, schemas, the memory's models) lives as long as the process, and a full
    collection walked all of it on the event loop, stalling every request in flight: frozen (gc.freeze),
    the collector no longer looks at it. And with a few dozen requests in flight, their live objects alone
    passed the youngest generation's threshold, so collections ran every few requests and promoted those
    objects towards the full collections; a threshold above what requests in flight hold lets them die
    young, by reference counting, as they do one request at a time."""
    global _heap_settled
    if _heap_settled:
        return
    _heap_settled = True
    gc.collect()
    gc.freeze()
    gc.set_threshold(_YOUNG_COLLECTION_OBJECTS, *gc.get_threshold()[1:])

"""The gateway's OpenAPI document (`/openapi.json`) and its offline Swagger UI (`/docs`).

`install_openapi(app, settings)` is called once by the app factory, after the routes are included.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from gateway.api.openapi.docs import install_docs
from gateway.api.openapi.document import describe
from gateway.settings import Settings

__all__ = ["install_openapi"]


def install_openapi(app: FastAPI, settings: Settings) -> None:
    generate = app.openapi  # FastAPI's: cached, regenerated when routes change
    described: dict[str, Any] | None = None

    def openapi() -> dict[str, Any]:
        nonlocal described
        document = generate()
        if document is not described:
            described = describe(document, app, max_body_bytes=settings.max_body_bytes,
                                 image_formats=settings.image_formats)
        return document

    app.openapi = openapi  # type: ignore[method-assign]
    install_docs(app)

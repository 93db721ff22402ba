"""OpenAI-shaped errors: `{"error": {"message", "type", "param", "code"}}` with the right status.

Every failure a client can cause ends here, so no input yields a 500 or a traceback. `as_gateway_error`
is the one place the services' errors (gateway.service_errors, images', memory's) get a status and code.
"""

from __future__ import annotations

import logging

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from gateway.images.errors import ImageError
from gateway.memory.embed import EmbedderError, ImageDecodeError
from gateway.memory.store.base import StoreError
from gateway.service_errors import NotFound, ServiceError, Unavailable

log = logging.getLogger("visionrag.errors")
_memory_log = logging.getLogger("visionrag.memory")  # where operators have always found these

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    502: "upstream_error",
    503: "upstream_error",
    504: "upstream_timeout",
}


class GatewayError(Exception):
    """An error the gateway answers with, in OpenAI's shape."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str | None = None,
        param: str | None = None,
        code: str | int | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type or _TYPES.get(status, "api_error")
        self.param = param
        self.code = code

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def response(self) -> Response:
        return Response(orjson.dumps(self.body()), status_code=self.status, media_type="application/json")


def error_response(status: int, message: str, **fields) -> Response:
    return GatewayError(status, message, **fields).response()


_DOMAIN_ERRORS = (ServiceError, ImageError, ImageDecodeError, EmbedderError, StoreError)


def as_gateway_error(exc: Exception) -> GatewayError:
    """The response a service's error gets. Details of backend failures are logged, never sent."""
    if isinstance(exc, GatewayError):
        return exc
    if isinstance(exc, ImageError):
        return GatewayError(400, exc.message, param=exc.param, code=exc.code)
    if isinstance(exc, ImageDecodeError):
        # Its message names an index in a batch, which means nothing to a client that sent one image.
        return GatewayError(400, "image: the image cannot be decoded", param="image", code="invalid_image")
    if isinstance(exc, NotFound):
        return GatewayError(404, exc.message, param=exc.param, code=exc.code)
    if isinstance(exc, EmbedderError | StoreError):
        unavailable = Unavailable("memory")
        unavailable.__cause__ = exc
        exc = unavailable
    if isinstance(exc, Unavailable):
        cause = exc.__cause__ or exc
        _memory_log.warning("%s is unavailable: %s: %s", exc.what, type(cause).__name__, cause)
        return GatewayError(503, exc.message, code=exc.code)
    assert isinstance(exc, ServiceError)
    return GatewayError(400, exc.message, param=exc.param, code=exc.code)


def _location(loc: tuple) -> str:
    parts = [str(p) for p in loc if p != "body"]
    return ".".join(parts) or "body"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(GatewayError)
    async def _gateway_error(_: Request, exc: GatewayError) -> Response:
        return exc.response()

    for domain_error in _DOMAIN_ERRORS:
        @app.exception_handler(domain_error)
        async def _domain_error(_: Request, exc: Exception) -> Response:
            return as_gateway_error(exc).response()

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> Response:
        # OpenAI answers malformed requests with 400, not FastAPI's 422.
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        param = _location(tuple(first.get("loc", ())))
        return error_response(400, f"{param}: {first.get('msg')}", param=param, code="invalid_value")

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> Response:
        message = exc.detail if isinstance(exc.detail, str) else "request failed"
        return error_response(exc.status_code, message)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        # A bug, not bad input: log it with its traceback, never show it to the client.
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(500, "internal gateway error; see the gateway's log", type="api_error")

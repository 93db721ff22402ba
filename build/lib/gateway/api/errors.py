"""The one place errors become HTTP responses: `{"error": {"message", "type", "param", "code"}}`.

The core raises gateway.errors' kinds; FastAPI raises its own for bad parameters and unknown paths;
anything else is a bug. Every one of them is answered here, so no input yields a traceback.
"""

from __future__ import annotations

import logging

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from gateway.errors import TYPES, BackendUnavailable, GatewayError, InvalidRequest, Relayed, Unavailable

log = logging.getLogger("visionrag.errors")
_memory_log = logging.getLogger("visionrag.memory")  # where operators have always found these

# Statuses FastAPI and Starlette answer by themselves (unknown path, wrong method), typed as OpenAI does.
_TYPES = {**TYPES, 405: "invalid_request_error"}


def response(exc: GatewayError) -> Response:
    """The response for a core error; a backend's failure is logged with its cause, never sent."""
    headers = None
    if isinstance(exc, BackendUnavailable):
        cause = exc.__cause__ or exc
        _memory_log.warning("%s is unavailable: %s: %s", exc.what, type(cause).__name__, cause)
    if isinstance(exc, Unavailable) and exc.retry_after_s is not None:
        headers = {"Retry-After": str(max(1, int(-(-exc.retry_after_s // 1))))}
    return Response(orjson.dumps(exc.body()), status_code=exc.status, media_type="application/json",
                    headers=headers)


def error_response(status: int, message: str, *, type: str | None = None, code: str | None = None) -> Response:
    """A response for a failure no core error describes (the framework's own, or a bug)."""
    return response(Relayed(status, message, type=type or _TYPES.get(status, "api_error"), code=code))


def _location(loc: tuple) -> str:
    parts = [str(p) for p in loc if p != "body"]
    return ".".join(parts) or "body"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(GatewayError)
    async def _gateway_error(_: Request, exc: GatewayError) -> Response:
        return response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> Response:
        # OpenAI answers malformed requests with 400, not FastAPI's 422.
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        param = _location(tuple(first.get("loc", ())))
        return response(InvalidRequest(f"{param}: {first.get('msg')}", param=param, code="invalid_value"))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> Response:
        message = exc.detail if isinstance(exc.detail, str) else "request failed"
        return error_response(exc.status_code, message)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        # A bug, not bad input: log it with its traceback, never show it to the client.
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(500, "internal gateway error; see the gateway's log")

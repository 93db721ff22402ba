"""Reading a JSON request body under a size limit, after the caller was authenticated.

Routes read their bodies here instead of declaring a pydantic body parameter: FastAPI reads and
parses a declared body before any dependency runs, so the API key would be checked after the whole
body sat in memory, and without the size limit. `openapi_body` keeps the model in /docs.
"""

from __future__ import annotations

from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ValidationError
from starlette.requests import Request

from gateway.errors import InvalidRequest, TooLarge

M = TypeVar("M", bound=BaseModel)


def max_body_bytes(request: Request) -> int:
    return request.app.state.settings.max_body_bytes


async def read_json(request: Request, max_bytes: int | None = None) -> Any:
    """The body as JSON, refused over `max_bytes` (default: the app's VISIONRAG_MAX_BODY_BYTES)."""
    if max_bytes is None:
        max_bytes = max_body_bytes(request)
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise InvalidRequest("invalid Content-Length header", code="invalid_request")
        if int(declared) > max_bytes:
            raise _too_large(max_bytes)
        body = await request.body()
    else:
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_bytes:
                raise _too_large(max_bytes)
            chunks.append(chunk)
        body = b"".join(chunks)
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"request body is not valid JSON: {exc}", code="invalid_json") from None


def _too_large(max_bytes: int) -> TooLarge:
    return TooLarge(f"request body is larger than the {max_bytes}-byte limit", code="request_too_large")


async def read_model(request: Request, model: type[M]) -> M:
    """The body as `model`, under VISIONRAG_MAX_BODY_BYTES; 400 naming the field when it does not fit."""
    payload = await read_json(request)
    if not isinstance(payload, dict):
        raise InvalidRequest("request body must be a JSON object", code="invalid_request")
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        raise validation_error(exc) from None


def validation_error(exc: ValidationError) -> InvalidRequest:
    """The first problem as an OpenAI-shaped 400; `param` is the field's dotted path (None: the whole body)."""
    first = exc.errors(include_url=False)[0]
    param = ".".join(str(part) for part in first["loc"]) or None
    message = first["msg"].removeprefix("Value error, ")
    return InvalidRequest(f"{param}: {message}" if param else message, param=param, code="invalid_value")


def openapi_body(body: type[BaseModel] | dict[str, Any]) -> dict[str, Any]:
    """`openapi_extra` for a route that reads its body itself: the request body /docs would have shown.

    `body` is the model the route reads, or the JSON schema of a body it forwards without one (a `$ref`)."""
    if isinstance(body, dict):
        schema = body
    else:
        schema = body.model_json_schema(mode="validation")
        schema = _inline(schema, schema.get("$defs", {}))
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def _inline(node: Any, defs: dict[str, Any]) -> Any:
    # Nested models become inline schemas: `#/$defs/...` would not resolve inside the OpenAPI document.
    if isinstance(node, dict):
        if "$ref" in node:
            target = _inline(defs[node["$ref"].rsplit("/", 1)[-1]], defs)
            return {**target, **{k: _inline(v, defs) for k, v in node.items() if k != "$ref"}}
        return {k: _inline(v, defs) for k, v in node.items() if k != "$defs"}
    if isinstance(node, list):
        return [_inline(item, defs) for item in node]
    return node

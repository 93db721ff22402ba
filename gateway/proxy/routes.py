"""HTTP routes of the request path. Thin: read, authenticate, hand over to ChatProxy, and make HTTP
of what it answers (`_response`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import APIRouter, Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from gateway.deps import ChatDep, TenantDep, authenticator
from gateway.errors import GatewayError, as_gateway_error
from gateway.images import ImageError
from gateway.proxy.body import openapi_body, read_json, read_model
from gateway.proxy.chat import EXCHANGE_HEADER, ChatResult, EventStream
from gateway.proxy.protocol import PredictRequest, PredictResponse

if TYPE_CHECKING:
    from gateway.services import Services

router = APIRouter()


def _services(request: Request) -> Services:
    return request.app.state.services


def _response(result: ChatResult) -> Response:
    if isinstance(result, EventStream):
        return StreamingResponse(
            result.events,
            media_type="text/event-stream",
            headers={EXCHANGE_HEADER: result.exchange_id, "Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    headers = {EXCHANGE_HEADER: result.exchange_id} if result.exchange_id is not None else None
    return Response(result.body, status_code=result.status, media_type=result.content_type, headers=headers)


@router.post("/v1/chat/completions")
async def chat_completions(request: Request, tenant: TenantDep, chat: ChatDep) -> Response:
    payload = await read_json(request)
    return _response(await chat.handle(payload, tenant))


@router.post("/v1/completions")
async def completions(request: Request, tenant: TenantDep, chat: ChatDep) -> Response:
    payload = await read_json(request)
    return _response(await chat.complete_text(payload, tenant))


@router.post("/tokenize")
async def tokenize(request: Request, _: TenantDep, chat: ChatDep) -> Response:
    payload = await read_json(request)
    return _response(await chat.tokenize(payload, "/tokenize"))


@router.post("/detokenize")
async def detokenize(request: Request, _: TenantDep, chat: ChatDep) -> Response:
    payload = await read_json(request)
    return _response(await chat.tokenize(payload, "/detokenize"))


@router.get("/v1/models")
async def models(_: TenantDep, chat: ChatDep) -> Response:
    return _response(await chat.models())


@router.post("/predict", response_model=PredictResponse, openapi_extra=openapi_body(PredictRequest))
async def predict(request: Request, tenant: TenantDep, chat: ChatDep) -> Response:
    body = await read_model(request, PredictRequest)
    services = _services(request)
    payload = {
        "model": body.model or await services.default_model(),
        "messages": [{
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": body.image_url}},
                {"type": "text", "text": body.user_query},
            ],
        }],
        "max_tokens": body.max_tokens,
    }
    try:
        completion, exchange_id = await chat.answer(payload, tenant, endpoint="predict")
    except (GatewayError, ImageError) as exc:
        raise _as_predict_error(as_gateway_error(exc)) from None
    output = completion["choices"][0]["message"].get("content") or ""
    return JSONResponse({"output": output}, headers={EXCHANGE_HEADER: exchange_id})


# Where /predict's fields sit in the chat request it is turned into.
_PREDICT_FIELDS = {"messages[0].content[0]": "image_url", "messages[0].content[1]": "user_query"}


def _as_predict_error(exc: GatewayError) -> GatewayError:
    """A chat error about the built request, re-worded to name the /predict field the client sent."""
    param = exc.param or ""
    for built, field in _PREDICT_FIELDS.items():
        if param == built or param.startswith((built + ".", built + "[")):
            message = field + exc.message.removeprefix(param) if exc.message.startswith(param) else exc.message
            return GatewayError(exc.status, message, type=exc.type, param=field, code=exc.code)
    return exc


@router.get("/health")
async def health() -> dict[str, str]:
    """The gateway process is alive (says nothing about the upstream)."""
    return {"status": "ok"}


@router.get("/ready")
async def ready(request: Request) -> Response:
    """The gateway can serve: at least one upstream answers.

    Open to probes, so it says how many replicas answer, not where they are; an operator key
    (VISIONRAG_ADMIN_KEYS) also gets each replica's URL and state."""
    services = _services(request)
    replicas = await services.pool.ready()
    healthy = sum(replicas.values())
    body: dict[str, object] = {"status": "ready" if healthy else "unavailable",
                               "upstreams": {"healthy": healthy, "total": len(replicas)}}
    if authenticator(request).presents_admin_key(request.headers.get("authorization")):
        body["replicas"] = [{"url": url, "healthy": ok} for url, ok in replicas.items()]
    return JSONResponse(body, status_code=200 if healthy else 503)

"""HTTP routes of the request path. Thin: read, authenticate, hand over to ChatProxy."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import APIRouter, Depends, Request
from starlette.responses import JSONResponse, Response

from gateway.auth import require_tenant
from gateway.proxy.body import read_json
from gateway.proxy.chat import EXCHANGE_HEADER
from gateway.proxy.protocol import PredictRequest, PredictResponse

if TYPE_CHECKING:
    from gateway.services import Services

router = APIRouter()


def _services(request: Request) -> Services:
    return request.app.state.services


@router.post("/v1/chat/completions")
async def chat_completions(request: Request, tenant: str = Depends(require_tenant)) -> Response:
    services = _services(request)
    payload = await read_json(request, services.settings.max_body_bytes)
    return await services.chat.handle(payload, tenant)


@router.get("/v1/models")
async def models(request: Request, _: str = Depends(require_tenant)) -> Response:
    pool = _services(request).pool
    upstream = await pool.open("GET", "/models")
    body = await pool.read(upstream)
    return Response(body, status_code=upstream.status,
                    media_type=upstream.response.headers.get("Content-Type", "application/json"))


@router.post("/predict", response_model=PredictResponse)
async def predict(body: PredictRequest, request: Request, tenant: str = Depends(require_tenant)) -> Response:
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
    completion, exchange_id = await services.chat.answer(payload, tenant, endpoint="predict")
    output = completion["choices"][0]["message"].get("content") or ""
    return JSONResponse({"output": output}, headers={EXCHANGE_HEADER: exchange_id})


@router.get("/health")
async def health() -> dict[str, str]:
    """The gateway process is alive (says nothing about the upstream)."""
    return {"status": "ok"}


@router.get("/ready")
async def ready(request: Request) -> Response:
    """The gateway can serve: at least one upstream answers."""
    upstreams = await _services(request).pool.ready()
    ok = any(upstreams.values())
    return JSONResponse({"status": "ready" if ok else "unavailable", "upstreams": upstreams},
                        status_code=200 if ok else 503)

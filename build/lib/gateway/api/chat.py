"""The chat routes (the request path). Thin: read, authenticate, hand over to ChatProxy, and make HTTP
of what it answers (`_response`)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import orjson
from fastapi import APIRouter, Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from gateway.api.body import openapi_body, read_json, read_model
from gateway.api.deps import AuthDep, ChatDep, TenantDep, chat_service
from gateway.api.history import image_url
from gateway.api.openapi import failures as F
from gateway.api.openapi.responses import completion_or_stream, errors
from gateway.api.openapi.schemas import ref
from gateway.proxy.augment import MemoryUse
from gateway.proxy.chat import EXCHANGE_HEADER, ChatResult, Completion, EventStream
from gateway.proxy.protocol import Citation, MemoryInfo, PredictRequest, PredictResponse

router = APIRouter()


def _response(request: Request, result: ChatResult) -> Response:
    """The upstream's answer as HTTP. Where memory was asked for, headers say what it did; a whole
    completion also carries the sources in a `visionrag` object (a stream stays as the upstream sent it)."""
    headers: dict[str, str] = {}
    if result.exchange_id is not None:
        headers[EXCHANGE_HEADER] = result.exchange_id
    if result.memory is not None:
        headers.update(result.memory.headers)
    if isinstance(result, EventStream):
        return _EventStreamResponse(
            result.events,
            media_type="text/event-stream",
            headers={**headers, "Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    body = result.body
    if _reports_memory(result) and isinstance(result.data, dict):
        info = _memory_info(request, result.memory, result.exchange_id)  # type: ignore[arg-type]
        body = orjson.dumps({**result.data, "visionrag": info.model_dump(mode="json")})
    return Response(body, status_code=result.status, media_type=result.content_type, headers=headers or None)


class _EventStreamResponse(StreamingResponse):
    """A StreamingResponse that relays on the request's own task, while a second task waits for the client
    to leave and then cancels the relay (the events' generator records what was said and drops the
    upstream connection). Starlette does the same with an anyio task group, whose cancel scope costs
    more per stream than the relaying itself."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        relay = asyncio.current_task()
        if scope["type"] != "http" or relay is None:
            await super().__call__(scope, receive, send)
            return
        left = False

        async def watch() -> None:
            nonlocal left
            while (await receive())["type"] != "http.disconnect":
                pass
            left = True
            relay.cancel()

        watcher = asyncio.create_task(watch())
        try:
            await self.stream_response(send)
        except asyncio.CancelledError:
            # The client left: the response is over, as Starlette's own would be. Any other cancellation
            # (the server stopping) goes on.
            if not left or relay.uncancel() > 0:
                raise
        finally:
            watcher.cancel()
        if self.background is not None:
            await self.background()


def _reports_memory(result: Completion) -> bool:
    return result.memory is not None and result.memory.reason != "off" and result.exchange_id is not None


def _memory_info(request: Request, memory: MemoryUse, exchange_id: str) -> MemoryInfo:
    return MemoryInfo(
        exchange_id=exchange_id,
        memory=memory.reason,
        sources=[
            Citation(
                n=c.n,
                exchange_id=c.source.exchange_id,
                score=round(c.source.score, 6),
                question=c.question,
                answer=c.excerpt,
                image_url=image_url(request, c.source.image_sha256),
                time=datetime.fromtimestamp(c.source.time, tz=UTC),
            )
            for c in memory.cited
        ],
    )


@router.post("/v1/chat/completions", openapi_extra=openapi_body(ref("ChatCompletionRequest")),
             responses={**completion_or_stream("ChatCompletion"), **errors(*F.UPSTREAM, *F.MESSAGES, *F.RELAYED)})
async def chat_completions(request: Request, tenant: TenantDep) -> Response:
    """OpenAI chat completions, streamed or not. Every image is fetched or decoded and checked by the gateway
    and sent on as a `data:` URL; the exchange is recorded before the answer ends, and `x-visionrag-exchange-id`
    names it."""
    payload = await read_json(request)
    return _response(request, await chat_service(request).handle(payload, tenant))


@router.post("/v1/completions", openapi_extra=openapi_body(ref("CompletionRequest")),
             responses={**completion_or_stream("Completion"),
                        **errors(*F.UPSTREAM, F.PROMPT, F.UNSUPPORTED_PARAMETER, *F.RELAYED)})
async def completions(request: Request, tenant: TenantDep) -> Response:
    """Text completions, streamed or not, recorded like chats."""
    payload = await read_json(request)
    return _response(request, await chat_service(request).complete_text(payload, tenant))


@router.post("/tokenize", openapi_extra=openapi_body(ref("TokenizeRequest")),
             responses=errors(*F.UPSTREAM, *F.MESSAGES, *F.RELAYED))
async def tokenize(request: Request, _: TenantDep) -> Response:
    """vLLM's tokenizer, not recorded; `messages` pass the same content and image checks as a chat."""
    payload = await read_json(request)
    return _response(request, await chat_service(request).tokenize(payload, "/tokenize"))


@router.post("/detokenize", openapi_extra=openapi_body(ref("TokenizeRequest")),
             responses=errors(*F.UPSTREAM, F.UNSUPPORTED_PARAMETER, *F.RELAYED))
async def detokenize(request: Request, _: TenantDep) -> Response:
    """vLLM's detokenizer, not recorded."""
    payload = await read_json(request)
    return _response(request, await chat_service(request).tokenize(payload, "/detokenize"))


@router.get("/v1/models", responses=errors(*F.UPSTREAM))
async def models(request: Request, _: TenantDep) -> Response:
    """The models the upstream serves."""
    return _response(request, await chat_service(request).models())


@router.post("/predict", response_model=PredictResponse, openapi_extra=openapi_body(PredictRequest),
             responses=errors(*F.UPSTREAM, *F.PREDICT, *F.RELAYED))
async def predict(request: Request, tenant: TenantDep) -> Response:
    """The original service's request: one image and a question, answered as `{"output"}` and recorded
    like a chat."""
    body = await read_model(request, PredictRequest)
    result = await chat_service(request).predict(body, tenant)
    answer: dict[str, Any] = {"output": result.data["choices"][0]["message"].get("content") or ""}
    headers = {EXCHANGE_HEADER: str(result.exchange_id)}
    if result.memory is not None:
        headers.update(result.memory.headers)
        if _reports_memory(result):
            answer["visionrag"] = _memory_info(request, result.memory, str(result.exchange_id)).model_dump(mode="json")
    return JSONResponse(answer, headers=headers)


@router.get("/health")
async def health() -> dict[str, str]:
    """The gateway process is alive (says nothing about the upstream)."""
    return {"status": "ok"}


@router.get("/ready", openapi_extra={"security": [{}, {"OperatorKey": []}]}, responses={200: {
    "description": "The gateway serves; `upstreams` says how many model server replicas answer. `status` is "
                   "`degraded` while none does (chats answer 503 with Retry-After; history and memory serve), "
                   "else `ready`.",
    "content": {"application/json": {"schema": ref("Readiness")}},
}})
async def ready(request: Request, chat: ChatDep, auth: AuthDep) -> Response:
    """The gateway serves (its lifespan has run), whether or not an upstream answers: readiness that
    followed vLLM would empty the gateway's Service during every vLLM restart and take the memory
    API with it, while chats already answer 503 with Retry-After when no upstream is up.

    The 200 stays; the body says `degraded` while no replica answers, so that a person or a script
    reading it is not told the model is there. Open to probes, so it says how many replicas answer, not
    where they are; an operator key (VISIONRAG_ADMIN_KEYS) also gets each replica's URL and state."""
    replicas = await chat.pool.ready()
    healthy = sum(replicas.values())
    body: dict[str, object] = {"status": "ready" if healthy else "degraded",
                               "upstreams": {"healthy": healthy, "total": len(replicas)}}
    if auth.presents_admin_key(request.headers.get("authorization")):
        body["replicas"] = [{"url": url, "healthy": ok} for url, ok in replicas.items()]
    return JSONResponse(body)

"""Chat completions through the gateway: normalize images, forward, relay, record.

The request body is forwarded as the client sent it, except for image URLs (replaced by the
verified `data:` URLs the model will see) and, for streams, a request for usage the journal
needs. The upstream's response bytes reach the client unchanged.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
from starlette.responses import Response, StreamingResponse

from gateway.errors import GatewayError
from gateway.images import ImageError, ImageLoader, LoadedImage
from gateway.proxy.messages import image_parts, require_messages
from gateway.proxy.recorder import PendingExchange, Recorder
from gateway.proxy.stream import EventSplitter, StreamAssembler
from gateway.proxy.upstream import UpstreamPool, UpstreamResponse

log = logging.getLogger("visionrag.chat")

EXCHANGE_HEADER = "x-visionrag-exchange-id"


class ChatProxy:
    def __init__(self, pool: UpstreamPool, loader: ImageLoader, recorder: Recorder,
                 max_images: int) -> None:
        self.pool = pool
        self.loader = loader
        self.recorder = recorder
        self.max_images = max_images

    async def handle(self, payload: Any, tenant: str, endpoint: str = "chat.completions") -> Response:
        messages = require_messages(payload)
        images = await self.normalize_images(messages)
        pending = PendingExchange.from_request(endpoint, tenant, payload, images)
        if payload.get("stream"):
            strip_usage = _request_usage(payload)
            return await self._stream(orjson.dumps(payload), pending, strip_usage)
        return await self._complete(orjson.dumps(payload), pending)

    async def answer(self, payload: dict[str, Any], tenant: str, endpoint: str) -> tuple[dict[str, Any], str]:
        """A non-streamed completion as parsed JSON, for endpoints that reshape it (/predict)."""
        response = await self.handle(payload, tenant, endpoint)
        try:
            body = orjson.loads(response.body)
        except orjson.JSONDecodeError:
            body = {"message": response.body.decode("utf-8", "replace")[:500]}
        if response.status_code != 200 or EXCHANGE_HEADER not in response.headers:
            raise _upstream_error(response.status_code if response.status_code != 200 else 502, body)
        return body, response.headers[EXCHANGE_HEADER]

    async def normalize_images(self, messages: list[Any]) -> list[LoadedImage]:
        parts = image_parts(messages)
        if len(parts) > self.max_images:
            raise GatewayError(
                400, f"too many images: {len(parts)} in this request, the limit is {self.max_images}",
                param="messages", code="too_many_images",
            )
        if not parts:
            return []

        async def load(part):
            try:
                return await self.loader.load(part.url)
            except ImageError as exc:
                raise GatewayError(400, f"{part.param}: {exc.message}", param=part.param, code=exc.code) from None

        loaded = await asyncio.gather(*(load(part) for part in parts))
        for part, image in zip(parts, loaded, strict=True):
            part.holder[part.key] = image.data_url
        return list(loaded)

    async def _complete(self, body: bytes, pending: PendingExchange) -> Response:
        upstream = await self.pool.open("POST", "/chat/completions", body)
        raw = await self.pool.read(upstream)
        content_type = upstream.response.headers.get("Content-Type", "application/json")
        headers = {}
        if upstream.status == 200:
            try:
                data = orjson.loads(raw)
                choice = data["choices"][0]
                answer = (choice.get("message") or {}).get("content") or ""
                self.recorder.record(
                    pending, answer=answer, finish_reason=choice.get("finish_reason"),
                    usage=data.get("usage"), model=data.get("model"), upstream=upstream.upstream.base_url,
                )
                headers[EXCHANGE_HEADER] = pending.id
            except (orjson.JSONDecodeError, KeyError, IndexError, TypeError, AttributeError):
                log.warning("upstream 200 response is not a chat completion; relayed, not recorded")
        return Response(raw, status_code=upstream.status, media_type=content_type, headers=headers)

    async def _stream(self, body: bytes, pending: PendingExchange, strip_usage: bool) -> Response:
        upstream = await self.pool.open("POST", "/chat/completions", body)
        content_type = upstream.response.headers.get("Content-Type", "")
        if upstream.status != 200 or not content_type.startswith("text/event-stream"):
            raw = await self.pool.read(upstream)
            return Response(raw, status_code=upstream.status, media_type=content_type or "application/json")
        return StreamingResponse(
            self._relay(upstream, pending, strip_usage),
            media_type="text/event-stream",
            headers={EXCHANGE_HEADER: pending.id, "Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    async def _relay(self, upstream: UpstreamResponse, pending: PendingExchange,
                     strip_usage: bool) -> AsyncIterator[bytes]:
        splitter = EventSplitter()
        assembler = StreamAssembler(strip_usage)
        recorded = False

        def record(status: str) -> None:
            nonlocal recorded
            recorded = True
            self.recorder.record(
                pending, answer=assembler.text, finish_reason=assembler.finish_reason,
                usage=assembler.usage, model=assembler.model, upstream=upstream.upstream.base_url,
                status=status,
            )

        try:
            async for data in upstream.response.content.iter_any():
                out = []
                for event in splitter.feed(data):
                    forward = assembler.observe(event)
                    # Durable before the client can hold the whole answer: record, then send [DONE].
                    if assembler.done and not recorded:
                        record("complete")
                    if forward:
                        out.append(event)
                if out:
                    yield b"".join(out)
            rest = splitter.rest()
            if rest:
                yield rest
            if not recorded:
                # The upstream closed without [DONE]; complete only if it gave a finish reason.
                record("complete" if assembler.finish_reason else "incomplete")
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("upstream stream broke off: %s", exc)
            record("incomplete")
            error = GatewayError(502, f"the upstream stream broke off: {exc}", code="upstream_error")
            yield b"data: " + orjson.dumps(error.body()) + b"\n\n"
        finally:
            # Reached on client disconnect too (the task is cancelled): keep what was said.
            if not recorded:
                record("incomplete")
            if assembler.done:
                upstream.release()
            else:
                upstream.close()


def _request_usage(payload: dict[str, Any]) -> bool:
    """Make the upstream send usage at the end of the stream; True if the client had not asked."""
    options = payload.get("stream_options")
    if isinstance(options, dict) and options.get("include_usage"):
        return False
    payload["stream_options"] = {**(options if isinstance(options, dict) else {}), "include_usage": True}
    return True


def _upstream_error(status: int, body: Any) -> GatewayError:
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        return GatewayError(status, str(error.get("message", "upstream error")), type=error.get("type"),
                            param=error.get("param"), code=error.get("code"))
    message = body.get("message") if isinstance(body, dict) else None
    return GatewayError(status, str(message or "upstream error"))

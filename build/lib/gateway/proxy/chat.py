"""Chat and text completions through the gateway: normalize content, forward, relay, record.

The request body is forwarded as the client sent it, except for message content (rebuilt part by
part, images replaced by the verified `data:` URLs the model will see: see `messages`) and, for
streams, a request for usage the journal needs. The upstream's response bytes reach the client
unchanged.

The service answers with a `Completion` (a whole body) or an `EventStream` (the relayed server-sent
events); gateway.api.chat alone makes HTTP responses of them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

from gateway.errors import GatewayError, InvalidRequest, Relayed, UpstreamFailed
from gateway.images import ImageError, ImageLoader, LoadedImage
from gateway.journal.records import Status
from gateway.metrics import IMAGES_REFUSED
from gateway.proxy.augment import Augmenter, ChatTurn, MemoryUse, pop_options
from gateway.proxy.messages import normalize_messages, refuse_unsafe_fields, require_messages
from gateway.proxy.protocol import MemoryOptions, PredictRequest
from gateway.proxy.recorder import Outcome, PendingExchange, Recorder
from gateway.proxy.stream import EventSplitter, StreamAssembler
from gateway.proxy.upstream import UpstreamPool, UpstreamResponse, upstream_unavailable

log = logging.getLogger("visionrag.chat")

EXCHANGE_HEADER = "x-visionrag-exchange-id"
_MEDIA_REFUSALS = frozenset({"invalid_content_part", "unsupported_content_part", "invalid_image_url"})


@dataclass(frozen=True, slots=True)
class Completion:
    """A whole answer: the upstream's bytes as they are (or the gateway's own error in their place)."""

    status: int
    body: bytes
    content_type: str = "application/json"
    # Set when the exchange was recorded: the body is then a completion, parsed here as `data`.
    exchange_id: str | None = None
    data: Any = field(default=None, compare=False, repr=False)
    # What memory did for this answer (None where memory does not apply: tokenize, models, errors).
    memory: MemoryUse | None = None


@dataclass(frozen=True, slots=True)
class EventStream:
    """A streamed answer: the upstream's events as they arrive; the exchange is recorded before [DONE]."""

    events: AsyncIterator[bytes]
    exchange_id: str
    memory: MemoryUse | None = None


ChatResult = Completion | EventStream


class ChatProxy:
    def __init__(self, pool: UpstreamPool, loader: ImageLoader, recorder: Recorder,
                 max_images: int, augmenter: Augmenter | None = None, default_model: str | None = None) -> None:
        self.pool = pool
        self.loader = loader
        self.recorder = recorder
        self.max_images = max_images
        # Puts memory into answers; None: chats go as sent (`"visionrag"` options are still removed).
        self.augmenter = augmenter
        self._default_model = default_model

    async def handle(self, payload: Any, tenant: str, endpoint: str = "chat.completions") -> ChatResult:
        messages = require_messages(payload)
        options = pop_options(payload)
        refuse_unsafe_fields(payload)
        images = await self.normalize_images(messages)
        # Built before memory touches the messages: the journal keeps what the client sent.
        pending = PendingExchange.from_request(endpoint, tenant, payload, images)
        memory = await self._augment(payload, pending, options)
        pending.memory = memory.journal() if memory.reason != "off" else None
        result = await self._forward("/chat/completions", payload, pending)
        return dataclasses.replace(result, memory=memory) if result.exchange_id is not None else result

    async def _augment(self, payload: dict[str, Any], pending: PendingExchange, options: MemoryOptions) -> MemoryUse:
        if self.augmenter is None:
            return MemoryUse("disabled" if options.memory else "off")
        turn = ChatTurn(
            tenant=pending.tenant,
            exchange_id=pending.id,
            user=pending.user,
            question=next((m["text"] for m in reversed(pending.messages) if m["role"] == "user" and m["text"]), ""),
            images=pending.images,
            known_answers=frozenset(m["text"] for m in pending.messages if m["role"] == "assistant" and m["text"]),
        )
        return await self.augmenter.augment(payload, turn, options)

    async def complete_text(self, payload: Any, tenant: str) -> ChatResult:
        """A text completion (`/v1/completions`): no images, recorded like a chat."""
        prompt = require_prompt(payload)
        if pop_options(payload).memory:
            raise InvalidRequest("memory in the answer works with chat completions (/v1/chat/completions)",
                               param="visionrag.memory", code="invalid_parameter")
        refuse_unsafe_fields(payload)
        pending = PendingExchange.from_request("completions", tenant, payload, [],
                                               messages=[{"role": "user", "text": prompt}])
        return await self._forward("/completions", payload, pending)

    async def tokenize(self, payload: Any, path: str) -> Completion:
        """`/tokenize` and `/detokenize`: not recorded, but chat-shaped input goes through the image path,
        because vLLM's /tokenize fetches and decodes message media like a chat would."""
        if not isinstance(payload, dict):
            raise InvalidRequest("request body must be a JSON object", code="invalid_request")
        pop_options(payload)
        refuse_unsafe_fields(payload)
        if "messages" in payload:
            await self.normalize_images(require_messages(payload))
        upstream = await self.pool.open("POST", path, orjson.dumps(payload), root=True)
        return _relay_body(upstream, await self.pool.read(upstream))

    async def models(self) -> Completion:
        upstream = await self.pool.open("GET", "/models")
        return _relay_body(upstream, await self.pool.read(upstream))

    async def _forward(self, path: str, payload: dict[str, Any], pending: PendingExchange) -> ChatResult:
        if payload.get("stream"):
            strip_usage = _request_usage(payload)
            return await self._stream(path, orjson.dumps(payload), pending, strip_usage)
        return await self._complete(path, orjson.dumps(payload), pending)

    async def answer(self, payload: dict[str, Any], tenant: str, endpoint: str) -> Completion:
        """A recorded, non-streamed completion (parsed in `data`), for endpoints that reshape it
        (/predict); any other outcome is raised as the error it is."""
        result = await self.handle(payload, tenant, endpoint)
        assert isinstance(result, Completion)  # the payload asks for no stream
        if result.status == 200 and result.exchange_id is not None:
            return result
        body = result.data
        if body is None:
            try:
                body = orjson.loads(result.body)
            except orjson.JSONDecodeError:
                body = {"message": result.body.decode("utf-8", "replace")[:500]}
        raise _upstream_error(result.status if result.status != 200 else 502, body)

    async def predict(self, request: PredictRequest, tenant: str) -> Completion:
        """The original service's request (one image and a question) as a recorded chat. Errors about
        the chat it becomes name the /predict field the client sent."""
        payload: dict[str, Any] = {
            "model": request.model or await self.default_model(),
            "messages": [{
                "role": "user",
                "content": [
                    {"type": "image_url", "image_url": {"url": request.image_url}},
                    {"type": "text", "text": request.user_query},
                ],
            }],
            "max_tokens": request.max_tokens,
        }
        if request.visionrag is not None:
            payload["visionrag"] = request.visionrag.model_dump(exclude_none=True)
        try:
            return await self.answer(payload, tenant, endpoint="predict")
        except GatewayError as exc:
            raise _as_predict_error(exc) from None

    async def default_model(self) -> str:
        """The configured default model, else the first one the upstream serves (asked once)."""
        if self._default_model is None:
            upstream = await self.pool.open("GET", "/models")
            body = await self.pool.read(upstream)
            try:
                self._default_model = orjson.loads(body)["data"][0]["id"]
            except (orjson.JSONDecodeError, KeyError, IndexError, TypeError):
                raise UpstreamFailed("no default model: set VISIONRAG_DEFAULT_MODEL or pass `model`",
                                     code="no_default_model") from None
        return self._default_model

    async def normalize_images(self, messages: list[Any]) -> list[LoadedImage]:
        try:
            parts = normalize_messages(messages)
        except InvalidRequest as exc:
            # Media the gateway does not check counts as a refused image, like a bad image URL.
            if exc.code in _MEDIA_REFUSALS:
                IMAGES_REFUSED.labels(str(exc.code)).inc()
            raise
        if len(parts) > self.max_images:
            IMAGES_REFUSED.labels("too_many_images").inc()
            raise InvalidRequest(
                f"too many images: {len(parts)} in this request, the limit is {self.max_images}",
                param="messages", code="too_many_images",
            )
        if not parts:
            return []

        async def load(part):
            try:
                return await self.loader.load(part.url)
            except ImageError as exc:
                raise ImageError(f"{part.param}: {exc.message}", exc.code, param=part.param) from None

        if len(parts) == 1:  # the usual chat: loaded on this task, not on one gather would start for it
            loaded = [await load(parts[0])]
        else:
            loaded = await asyncio.gather(*(load(part) for part in parts))
        for part, image in zip(parts, loaded, strict=True):
            part.holder["url"] = image.data_url
        return list(loaded)

    async def _complete(self, path: str, body: bytes, pending: PendingExchange) -> Completion:
        upstream = await self.pool.open("POST", path, body)
        raw = await self.pool.read(upstream)
        content_type = upstream.response.headers.get("Content-Type", "application/json")
        if upstream.status == 200:
            try:
                data = orjson.loads(raw)
                choice = data["choices"][0]
                answer = _text_of(choice)
                await self.recorder.record(pending, Outcome(
                    answer, choice.get("finish_reason"), data.get("usage"), data.get("model"),
                    upstream.upstream.base_url,
                ))
                return Completion(upstream.status, raw, content_type, exchange_id=pending.id, data=data)
            except (orjson.JSONDecodeError, KeyError, IndexError, TypeError, AttributeError):
                log.warning("upstream 200 response is not a chat completion; relayed, not recorded")
        return _relay_body(upstream, raw)

    async def _stream(self, path: str, body: bytes, pending: PendingExchange, strip_usage: bool) -> ChatResult:
        upstream = await self.pool.open("POST", path, body)
        content_type = upstream.response.headers.get("Content-Type", "")
        if upstream.status != 200 or not content_type.startswith("text/event-stream"):
            return _relay_body(upstream, await self.pool.read(upstream))
        return EventStream(self._relay(upstream, pending, strip_usage), pending.id)

    async def _relay(self, upstream: UpstreamResponse, pending: PendingExchange,
                     strip_usage: bool) -> AsyncIterator[bytes]:
        splitter = EventSplitter()
        assembler = StreamAssembler(strip_usage)
        recorded = False

        def outcome(status: Status) -> Outcome:
            nonlocal recorded
            recorded = True
            return Outcome(assembler.text, assembler.finish_reason, assembler.usage, assembler.model,
                           upstream.upstream.base_url, status)

        try:
            async for data in upstream.response.content.iter_any():
                out = []
                for event in splitter.feed(data):
                    forward = assembler.observe(event)
                    # Durable before the client can hold the whole answer: record, then send [DONE].
                    if assembler.done and not recorded:
                        await self.recorder.record(pending, outcome("complete"))
                    if forward:
                        out.append(event)
                if out:
                    yield b"".join(out)
            rest = splitter.rest()
            if rest:
                yield rest
            if not recorded:
                # The upstream closed without [DONE]; complete only if it gave a finish reason.
                await self.recorder.record(pending, outcome("complete" if assembler.finish_reason else "incomplete"))
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("upstream stream broke off: %r", exc)
            await self.recorder.record(pending, outcome("incomplete"))
            error = UpstreamFailed("the model server's stream broke off before the answer was complete",
                                 code="upstream_error")
            yield b"data: " + orjson.dumps(error.body()) + b"\n\n"
        finally:
            # Reached on client disconnect too (the task is cancelled, and may not wait): keep what was said.
            if not recorded:
                self.recorder.record_now(pending, outcome("incomplete"))
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


def _relay_body(upstream: UpstreamResponse, raw: bytes) -> Completion:
    """The upstream's answer as it is, except its own failures: their bodies carry the model server's
    internals (exception text), and the client can do nothing with them."""
    if upstream.status >= 500:
        log.error("upstream %s answered %d: %s", upstream.upstream.base_url, upstream.status,
                  raw[:1000].decode("utf-8", "replace"))
        if upstream.status == 503:  # overloaded or restarting: clients (the OpenAI SDK too) wait and retry
            raise upstream_unavailable("the model server is unavailable; try again shortly",
                                      retry_after_s=_retry_after(upstream.response.headers.get("Retry-After")))
        error = UpstreamFailed("the model server failed to answer this request", code="upstream_error")
        return Completion(error.status, orjson.dumps(error.body()))
    return Completion(upstream.status, raw, upstream.response.headers.get("Content-Type", "application/json"))


def _retry_after(value: str | None) -> float:
    """The upstream's own Retry-After in seconds when it sent one (bounded), else one second."""
    try:
        seconds = float(value or 1)
    except ValueError:  # an HTTP date, or garbage: not worth parsing
        return 1.0
    return min(max(seconds, 1.0), 60.0) if math.isfinite(seconds) else 1.0


def require_prompt(payload: Any) -> str:
    """The text of a completion's `prompt`, for the journal ("" for token ids)."""
    if not isinstance(payload, dict):
        raise InvalidRequest("request body must be a JSON object", code="invalid_request")
    prompt = payload.get("prompt")
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, list) and prompt:
        if all(isinstance(item, str) for item in prompt):
            return "\n".join(prompt)
        if all(isinstance(item, int) for item in prompt) or all(
            isinstance(item, list) and all(isinstance(t, int) for t in item) for item in prompt
        ):
            return ""
    raise InvalidRequest("`prompt` must be a string, a list of strings, or token ids", param="prompt",
                       code="invalid_value")


def _text_of(choice: dict[str, Any]) -> str:
    """A choice's text: `message.content` in chat completions, `text` in text completions."""
    if "message" in choice:
        return (choice.get("message") or {}).get("content") or ""
    return choice.get("text") or ""


# Where /predict's fields sit in the chat request it is turned into.
_PREDICT_FIELDS = {"messages[0].content[0]": "image_url", "messages[0].content[1]": "user_query"}


def _as_predict_error(exc: GatewayError) -> GatewayError:
    """A chat error about the built request, re-worded to name the /predict field the client sent."""
    param = exc.param or ""
    for built, field_name in _PREDICT_FIELDS.items():
        if param == built or param.startswith((built + ".", built + "[")):
            message = field_name + exc.message.removeprefix(param) if exc.message.startswith(param) else exc.message
            return Relayed(exc.status, message, type=exc.type, param=field_name, code=exc.code)
    return exc


def _upstream_error(status: int, body: Any) -> Relayed:
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        return Relayed(status, str(error.get("message", "upstream error")), type=error.get("type"),
                       param=error.get("param"), code=error.get("code"))
    message = body.get("message") if isinstance(body, dict) else None
    return Relayed(status, str(message or "upstream error"))

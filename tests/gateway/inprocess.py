"""The whole gateway app in this process (httpx's ASGI transport), and a recording upstream beside it.

`gateway(settings)`: the app with its lifespan run as in uvicorn. Settings are the real ones; the
upstream is whatever URL the test gives (by default a port where nothing listens), memory is off
unless asked for.

`RecordingUpstream`: a test double for the model server (vLLM's OpenAI API), an aiohttp app on
127.0.0.1 in the test's own event loop. It records every request it receives (method, path, headers,
body) and answers with scripted replies, or by default with small OpenAI-shaped answers built from the
request (JSON, or SSE when `stream` is set). For tests of the gateway's own behaviour: what it
forwards, which headers and error shapes it answers with, how it rewrites a body. What vLLM itself
accepts and returns (validation, token ids, chat templates, media) is tested against the real vLLM.

`edge(data_dir, **settings)`: both together, the gateway's only upstream being the recording one
(unless `upstream_urls` lists others around `RECORDING`);
`on_edge(data_dir, scenario, **settings)` runs one scenario on it from a plain (sync) test.

httpx's ASGI transport hands over a response once the app has sent all of it, so a stream is read
whole here: what a client that leaves mid-stream causes needs a real server (tests.plugins).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self, TypeVar

import httpx
import openai
import orjson
from aiohttp import web
from fastapi import FastAPI
from multidict import CIMultiDict, CIMultiDictProxy

from gateway.api.app import create_app
from gateway.journal import Journal, open_journal
from gateway.settings import Settings
from tests.plugins.gateway_server import free_port

T = TypeVar("T")

MODEL = "fake-vlm"
MAX_MODEL_LEN = 8192


def settings_for(data_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {"data_dir": data_dir, "memory_enabled": False,
                              "upstream_urls": [f"http://127.0.0.1:{free_port()}/v1"]}
    return Settings(_env_file=None, **{**values, **overrides})


@asynccontextmanager
async def gateway(settings: Settings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            yield app, client


# ---- the recording upstream ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Received:
    """One request as the upstream received it."""

    method: str
    path: str  # /v1/chat/completions, /tokenize, /health, ...
    headers: CIMultiDictProxy[str]
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)


@dataclass(frozen=True)
class Reply:
    """A scripted answer: a JSON body (`json`), or a stream of server-sent `events` (each a JSON object,
    or bytes sent as they are) closed by `data: [DONE]` unless `done` is false. `delay_s` waits before
    answering (a stall); `break_after` drops the connection after that many events (a crash mid-answer)."""

    status: int = 200
    json: Any = None
    events: Sequence[Any] | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    done: bool = True
    break_after: int | None = None


Script = Reply | Callable[[Received], Reply]


class RecordingUpstream:
    """A test double for the model server; see the module's docstring. `async with RecordingUpstream()
    as upstream:` serves it; `upstream.base_url` is what the gateway's VISIONRAG_UPSTREAM_URLS takes."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self._once: dict[str, deque[Script]] = {}
        self._always: dict[str, Script] = {}
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def reply(self, path: str, *replies: Script) -> None:
        """Answer the next requests to `path` with these, one each, in order; then as before."""
        self._once.setdefault(path, deque()).extend(replies)

    def always(self, path: str, reply: Script) -> None:
        """Answer every request to `path` with this (a Reply, or a function of the request)."""
        self._always[path] = reply

    def requests(self, path: str) -> list[Received]:
        return [r for r in self.received if r.path == path]

    async def __aenter__(self) -> Self:
        app = web.Application(client_max_size=64 << 20)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)  # a stalled reply holds no test up
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        received = Received(request.method, request.path, CIMultiDictProxy(CIMultiDict(request.headers)),
                            await request.read())
        self.received.append(received)
        queued = self._once.get(received.path)
        script = queued.popleft() if queued else self._always.get(received.path) or _default
        reply = script(received) if callable(script) else script
        if reply.delay_s:
            await asyncio.sleep(reply.delay_s)
        if reply.events is None:
            return web.Response(status=reply.status, headers=reply.headers, body=orjson.dumps(reply.json),
                                content_type="application/json")
        response = web.StreamResponse(status=reply.status,
                                      headers={"Content-Type": "text/event-stream", **reply.headers})
        await response.prepare(request)
        for i, event in enumerate(reply.events):
            if reply.break_after is not None and i == reply.break_after:
                assert request.transport is not None
                request.transport.close()
                return response
            await response.write(event if isinstance(event, bytes) else b"data: " + orjson.dumps(event) + b"\n\n")
        if reply.done:
            await response.write(b"data: [DONE]\n\n")
        return response


def _default(received: Received) -> Reply:
    """What vLLM answers, in shape: a few tokens of text, usage, the served model."""
    method, path = received.method, received.path
    if (method, path) == ("GET", "/health"):
        return Reply()
    if (method, path) == ("GET", "/v1/models"):
        return Reply(json={"object": "list", "data": [{"id": MODEL, "object": "model", "owned_by": "vllm",
                                                        "max_model_len": MAX_MODEL_LEN}]})
    body = received.json() if received.body else {}
    if (method, path) == ("POST", "/tokenize"):
        count = max(1, len(received.body) // 4)
        return Reply(json={"count": count, "max_model_len": MAX_MODEL_LEN, "tokens": list(range(count))})
    if (method, path) == ("POST", "/detokenize"):
        return Reply(json={"prompt": " ".join(f"tok{t}" for t in body.get("tokens") or [])})
    if method == "POST" and path in ("/v1/chat/completions", "/v1/completions"):
        return completion(body, chat=path == "/v1/chat/completions")
    return Reply(status=404, json={"error": {"message": f"no route {method} {path}", "type": "NotFoundError",
                                             "param": None, "code": 404}})


def completion(request: Mapping[str, Any], *, chat: bool = True, text: str | None = None) -> Reply:
    """An answer to a chat or text completion request: `text` (by default `tok0 tok1 ...`, one word per
    token up to `max_tokens`, at most 16), streamed if the request asks, with usage as vLLM sends it."""
    limit = request.get("max_completion_tokens") or request.get("max_tokens")
    words = min(int(limit), 16) if isinstance(limit, int) and not isinstance(limit, bool) and limit > 0 else 16
    pieces = [f"tok{i} " for i in range(words)] if text is None else [text]
    finish = "length" if text is None and words == limit else "stop"
    usage = {"prompt_tokens": 16, "completion_tokens": len(pieces), "total_tokens": 16 + len(pieces)}
    kind = "chat.completion" if chat else "text_completion"
    head = {"id": "cmpl-recorded", "created": int(time.time()), "model": request.get("model") or MODEL}
    if not request.get("stream"):
        answer = "".join(pieces)
        choice = ({"index": 0, "message": {"role": "assistant", "content": answer}} if chat
                  else {"index": 0, "text": answer})
        return Reply(json={**head, "object": kind, "choices": [{**choice, "finish_reason": finish}],
                           "usage": usage})

    def chunk(piece: str | None, finish_reason: str | None = None) -> dict[str, Any]:
        choice = ({"index": 0, "delta": {"content": piece} if piece is not None else {}} if chat
                  else {"index": 0, "text": piece or ""})
        return {**head, "object": f"{kind}.chunk" if chat else kind,
                "choices": [{**choice, "finish_reason": finish_reason}]}

    events: list[Any] = [{**head, "object": f"{kind}.chunk", "choices": [
        {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]}] if chat else []
    events += [chunk(p, finish if i == len(pieces) - 1 else None) for i, p in enumerate(pieces)]
    if (request.get("stream_options") or {}).get("include_usage"):
        events.append({**head, "object": f"{kind}.chunk" if chat else kind, "choices": [], "usage": usage})
    return Reply(events=events)


# ---- both together ----------------------------------------------------------------------------------


@dataclass
class Edge:
    """The app in process, in front of a recording upstream."""

    app: FastAPI
    client: httpx.AsyncClient
    upstream: RecordingUpstream
    settings: Settings

    def journal(self) -> Journal:
        return open_journal(self.settings)

    def openai(self, api_key: str = "unused") -> openai.AsyncOpenAI:
        """The openai SDK, talking to the app over the same transport."""
        http = httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url="http://gateway")
        return openai.AsyncOpenAI(base_url="http://gateway/v1", api_key=api_key, max_retries=0, http_client=http)


# In `upstream_urls`, where the recording upstream goes among other replicas (a dead one, say).
RECORDING = "<the recording upstream>"


@asynccontextmanager
async def edge(data_dir: Path, **overrides: Any) -> AsyncIterator[Edge]:
    async with RecordingUpstream() as upstream:
        urls = [upstream.base_url if url == RECORDING else url for url in overrides.pop("upstream_urls", [RECORDING])]
        settings = settings_for(data_dir, upstream_urls=urls, **overrides)
        async with gateway(settings) as (app, client):
            yield Edge(app, client, upstream, settings)


def on_edge(data_dir: Path, scenario: Callable[[Edge], Awaitable[T]], **overrides: Any) -> T:
    """Run `scenario` against a fresh edge in a loop of its own; what it returns, the test asserts on."""
    async def main() -> T:
        async with edge(data_dir, **overrides) as e:
            return await scenario(e)

    return asyncio.run(main())

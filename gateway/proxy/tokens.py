"""Token counts from the upstream's own tokenizer (vLLM's `/tokenize`), or a safe estimate.

Used to keep a request that memory augments inside the model's context. vLLM counts a chat the way it
will render it (chat template, image tokens included) and says its `max_model_len`. An upstream without
`/tokenize` gets an estimate that never undercounts: one token per UTF-8 byte (a byte-level BPE token
is at least one byte).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from gateway.errors import GatewayError
from gateway.proxy.upstream import UpstreamPool

log = logging.getLogger("visionrag.tokens")


@dataclass(frozen=True, slots=True)
class ChatCount:
    tokens: int
    max_model_len: int | None


def estimate(text: str) -> int:
    return len(text.encode("utf-8"))


class TokenCounter:
    def __init__(self, pool: UpstreamPool) -> None:
        self.pool = pool

    async def count_chat(self, model: Any, messages: list[Any]) -> ChatCount | None:
        """The prompt a chat request renders to, as the upstream counts it; None if it cannot say."""
        body = await self._tokenize({"model": model, "messages": messages, "add_generation_prompt": True})
        if body is None:
            return None
        max_len = body.get("max_model_len")
        return ChatCount(int(body["count"]), int(max_len) if isinstance(max_len, int) else None)

    async def count_text(self, model: Any, text: str) -> int:
        body = await self._tokenize({"model": model, "prompt": text, "add_special_tokens": False})
        return int(body["count"]) if body is not None else estimate(text)

    async def _tokenize(self, request: dict[str, Any]) -> dict[str, Any] | None:
        try:
            upstream = await self.pool.open("POST", "/tokenize", orjson.dumps(request), root=True)
            raw = await self.pool.read(upstream)
        except (GatewayError, aiohttp.ClientError) as exc:
            log.info("token count unavailable from the upstream: %s", exc)
            return None
        if upstream.status != 200:
            log.info("the upstream's /tokenize answered %d; estimating", upstream.status)
            return None
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return None
        return body if isinstance(body, dict) and isinstance(body.get("count"), int) else None

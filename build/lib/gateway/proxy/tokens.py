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


# No token of a served vocabulary spans more characters than this, so a prompt of more characters than
# this many times the context cannot fit. Were one longer, a chat would only go without memory.
_MAX_CHARS_PER_TOKEN = 32
# Below this many characters a prompt is simply counted; above it, the context is checked first.
_LONG_PROMPT_CHARS = 1 << 16


def text_chars(messages: list[Any]) -> int:
    """Characters of text in chat messages (string contents and text parts): a lower bound on the
    prompt's size that costs no request."""
    total = 0
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            total += len(content)
        elif isinstance(content, list):
            total += sum(len(part["text"]) for part in content
                         if isinstance(part, dict) and isinstance(part.get("text"), str))
    return total


class TokenCounter:
    def __init__(self, pool: UpstreamPool) -> None:
        self.pool = pool
        self._max_model_len: dict[str, int] = {}

    async def count_chat(self, model: Any, messages: list[Any]) -> ChatCount | None:
        """The prompt a chat request renders to, as the upstream counts it; None if it cannot say.

        A prompt far longer than the model's context is not sent to be counted (the upstream would
        answer with every one of its token ids): it gets a lower bound that says it does not fit."""
        chars = text_chars(messages)
        if chars > _LONG_PROMPT_CHARS:
            max_len = await self.max_model_len(model)
            if max_len is not None and chars > max_len * _MAX_CHARS_PER_TOKEN:
                return ChatCount(chars // _MAX_CHARS_PER_TOKEN, max_len)
        body = await self._tokenize({"model": model, "messages": messages, "add_generation_prompt": True})
        if body is None:
            return None
        max_len = self._learn(model, body)
        return ChatCount(int(body["count"]), max_len)

    async def max_model_len(self, model: Any) -> int | None:
        """The model's context length as the upstream last said it (asked with an empty prompt once)."""
        if (known := self._max_model_len.get(str(model))) is not None:
            return known
        body = await self._tokenize({"model": model, "prompt": "", "add_special_tokens": False})
        return self._learn(model, body) if body is not None else None

    def _learn(self, model: Any, body: dict[str, Any]) -> int | None:
        max_len = body.get("max_model_len")
        if not isinstance(max_len, int) or isinstance(max_len, bool):
            return None
        if len(self._max_model_len) >= 64:  # served model names, unless an upstream answers for any
            self._max_model_len.clear()
        self._max_model_len[str(model)] = max_len
        return max_len

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

"""Memory in the answer: past exchanges put into a chat as numbered sources the model cites as [n].

A request asks with `"visionrag": {"memory": true}` (the deployment's default otherwise); the field is
removed before the request is forwarded. Whatever happens here, the chat goes ahead: memory disabled,
the store failing, retrieval over its time budget or no room left in the model's context all leave the
request as the client sent it, and `MemoryUse.reason` (a response header) says why.

The sources go into a system message (appended to the client's own, if it sent one), inside a token
budget counted with the upstream's tokenizer: never more than `max_tokens` of sources, and never so many
that the prompt plus the room for the answer exceed the model's context.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol

from pydantic import ValidationError

from gateway.errors import GatewayError
from gateway.images import LoadedImage
from gateway.memory.retrieval import RecallQuery, Source
from gateway.memory.store.base import SearchFilter
from gateway.proxy.protocol import MemoryOptions
from gateway.proxy.tokens import TokenCounter
from gateway.proxy.upstream import UpstreamPool

if TYPE_CHECKING:
    from gateway.settings import Settings

log = logging.getLogger("visionrag.memory.chat")

MEMORY_HEADER = "x-visionrag-memory"
SOURCES_HEADER = "x-visionrag-sources"
OPTIONS_FIELD = "visionrag"

Reason = Literal["used", "no_sources", "off", "disabled", "unavailable", "timeout", "no_room"]

# Tokens the system message's own wording, the chat template's wrapping of it and the joins between
# sources may add beyond the sources counted one by one.
_WRAPPER_TOKENS = 64
_PER_SOURCE_TOKENS = 4

_INSTRUCTIONS = (
    "Below are excerpts from this user's earlier conversations with you (your memory). When one of "
    "them helps answer, use it and cite it as [n]; ignore those that do not help. Do not mention the "
    "memory otherwise."
)


def pop_options(payload: dict[str, Any]) -> MemoryOptions:
    """Take the `visionrag` object out of the request (the upstream never sees it)."""
    raw = payload.pop(OPTIONS_FIELD, None)
    if raw is None:
        return MemoryOptions()
    try:
        return MemoryOptions.model_validate(raw)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(p) for p in (OPTIONS_FIELD, *error["loc"]))
        raise GatewayError(400, f"{where}: {error['msg']}", param=where, code="invalid_parameter") from None


@dataclass(frozen=True, slots=True)
class Cited:
    n: int
    source: Source
    excerpt: str  # what the model was shown of the past answer


@dataclass(frozen=True, slots=True)
class MemoryUse:
    reason: Reason
    cited: tuple[Cited, ...] = ()

    @property
    def headers(self) -> dict[str, str]:
        headers = {MEMORY_HEADER: self.reason}
        if self.cited:
            headers[SOURCES_HEADER] = ",".join(c.source.exchange_id for c in self.cited)
        return headers

    def journal(self) -> dict[str, Any]:
        """What the journal keeps: why, and which exchanges were sources (their text is theirs)."""
        return {"reason": self.reason,
                "sources": [{"n": c.n, "exchange_id": c.source.exchange_id, "score": round(c.source.score, 6)}
                            for c in self.cited]}


class Recaller(Protocol):
    """What the chat needs of memory (gateway.memory.service.Memory)."""

    async def recall(self, flt: SearchFilter, query: RecallQuery, *, k: int) -> list[Source]: ...

    async def image(self, tenant: str, sha256: str) -> Any: ...


@dataclass(frozen=True, slots=True)
class AugmentConfig:
    default: bool = False
    k: int = 4
    same_user: bool = False
    timeout_s: float = 0.5
    max_tokens: int = 1500
    answer_reserve_tokens: int = 512
    source_chars: int = 1200
    attach_images: bool = False

    @classmethod
    def from_settings(cls, settings: Settings) -> AugmentConfig:
        return cls(
            default=settings.memory_chat_default,
            k=settings.memory_chat_k,
            same_user=settings.memory_chat_same_user,
            timeout_s=settings.memory_chat_timeout_ms / 1000,
            max_tokens=settings.memory_max_tokens,
            answer_reserve_tokens=settings.memory_answer_reserve_tokens,
            source_chars=settings.memory_source_chars,
            attach_images=settings.memory_attach_images,
        )


@dataclass(slots=True)
class ChatTurn:
    """What retrieval needs to know of the request being answered."""

    tenant: str
    exchange_id: str
    user: str | None
    question: str
    images: list[LoadedImage]
    known_answers: frozenset[str] = field(default_factory=frozenset)


class Augmenter:
    def __init__(self, memory: Recaller | None, tokens: TokenCounter, config: AugmentConfig,
                 max_images: int) -> None:
        self.memory = memory
        self.tokens = tokens
        self.config = config
        self.max_images = max_images

    @classmethod
    def from_settings(cls, settings: Settings, memory: Recaller | None, pool: UpstreamPool) -> Augmenter:
        return cls(memory, TokenCounter(pool), AugmentConfig.from_settings(settings),
                   settings.max_images_per_request)

    async def augment(self, payload: dict[str, Any], turn: ChatTurn, options: MemoryOptions) -> MemoryUse:
        """Put sources into `payload["messages"]` when memory is asked for and can help. Never raises."""
        wanted = self.config.default if options.memory is None else options.memory
        if not wanted:
            return MemoryUse("off")
        if self.memory is None:
            return MemoryUse("disabled")
        try:
            return await asyncio.wait_for(self._augment(payload, turn, options), self.config.timeout_s)
        except TimeoutError:
            log.warning("memory: retrieval took longer than %.0f ms; answering without it",
                        self.config.timeout_s * 1000)
            return MemoryUse("timeout")
        except Exception as exc:  # memory must never fail a chat; the log has the cause
            log.warning("memory: retrieval failed; answering without it: %s", exc,
                        exc_info=not isinstance(exc, GatewayError))
            return MemoryUse("unavailable")

    async def _augment(self, payload: dict[str, Any], turn: ChatTurn, options: MemoryOptions) -> MemoryUse:
        assert self.memory is not None
        messages: list[Any] = payload["messages"]
        model = payload.get("model")
        same_user = self.config.same_user if options.same_user is None else options.same_user
        flt = SearchFilter(turn.tenant, user=turn.user if same_user else None,
                           exclude_exchanges=(turn.exchange_id,))
        first = turn.images[0] if turn.images else None
        query = RecallQuery(turn.question, first.data if first else None, first.sha256 if first else None,
                            turn.known_answers)
        # The prompt's own length does not depend on what is found: count it while retrieval runs.
        base_count = asyncio.ensure_future(self.tokens.count_chat(model, messages))
        try:
            sources = await self.memory.recall(flt, query, k=options.k or self.config.k)
            if not sources:
                return MemoryUse("no_sources")
            blocks = [_render(n, source, self.config.source_chars) for n, source in enumerate(sources, 1)]
            counts = await asyncio.gather(*(self.tokens.count_text(model, text) for text, _ in blocks))
            base = await base_count
        finally:
            base_count.cancel()
        budget = self.config.max_tokens
        if base is not None and base.max_model_len is not None:
            answer = _answer_room(payload, self.config.answer_reserve_tokens)
            budget = min(budget, base.max_model_len - base.tokens - answer - _WRAPPER_TOKENS)
        cited: list[Cited] = []
        spent = 0
        # In rank order; a source that does not fit is skipped, a shorter one after it may still fit.
        for source, (_, excerpt), count in zip(sources, blocks, counts, strict=True):
            if spent + count + _PER_SOURCE_TOKENS > budget:
                continue
            spent += count + _PER_SOURCE_TOKENS
            cited.append(Cited(len(cited) + 1, source, excerpt))
        if not cited:
            return MemoryUse("no_room")
        # Numbered as the model is shown them (renumbered when one was skipped).
        texts = [_render(c.n, c.source, self.config.source_chars)[0] for c in cited]
        _merge_system(messages, _INSTRUCTIONS + "\n\n" + "\n\n".join(texts))
        if self.config.attach_images:
            await self._attach_images(messages, turn, cited)
        return MemoryUse("used", tuple(cited))

    async def _attach_images(self, messages: list[Any], turn: ChatTurn, cited: list[Cited]) -> None:
        """For models that take several images: the sources' images, before the question, as far as the
        per-request image limit allows."""
        assert self.memory is not None
        room = self.max_images - len(turn.images)
        parts = []
        for c in cited:
            sha = c.source.image_sha256
            if room <= 0 or not sha or sha in {i.sha256 for i in turn.images}:
                continue
            image = await self.memory.image(turn.tenant, sha)
            url = f"data:{image.mime};base64,{base64.b64encode(image.data).decode('ascii')}"
            parts += [{"type": "text", "text": f"Image of source [{c.n}]:"},
                      {"type": "image_url", "image_url": {"url": url}}]
            room -= 1
        last_user = next((m for m in reversed(messages) if isinstance(m, dict) and m.get("role") == "user"), None)
        if parts and last_user is not None:
            content = last_user.get("content")
            if isinstance(content, str):
                content = [{"type": "text", "text": content}]
            last_user["content"] = parts + list(content or [])


def _render(n: int, source: Source, max_chars: int) -> tuple[str, str]:
    """A source as the model reads it, and the excerpt of its answer it quotes."""
    answer = source.answer.strip()
    excerpt = answer if len(answer) <= max_chars else answer[:max_chars].rstrip() + " …"
    when = datetime.fromtimestamp(source.time, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")
    about = " about an image" if source.image_sha256 else ""
    return f"[{n}] Asked on {when}{about}: {source.question.strip()}\nYour answer then: {excerpt}", excerpt


def _answer_room(payload: dict[str, Any], reserve: int) -> int:
    for key in ("max_completion_tokens", "max_tokens"):
        value = payload.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return reserve


def _merge_system(messages: list[Any], text: str) -> None:
    """Append to the client's system message, or put one first."""
    first = messages[0] if messages else None
    if isinstance(first, dict) and first.get("role") == "system":
        content = first.get("content")
        if isinstance(content, list):
            first["content"] = [*content, {"type": "text", "text": "\n\n" + text}]
        else:
            first["content"] = (f"{content}\n\n" if content else "") + text
        return
    messages.insert(0, {"role": "system", "content": text})

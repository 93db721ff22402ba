"""Memory in the answer: past exchanges put into a chat as numbered sources the model cites as [n].

A request asks with `"visionrag": {"memory": true}` (the deployment's default otherwise); the field is
removed before the request is forwarded. Whatever happens here, the chat goes ahead: memory disabled,
the store failing, retrieval over its time budget or no room left in the model's context all leave the
request as the client sent it, and `MemoryUse.reason` (a response header) says why. The new messages
are built on a copy and put into the request only once everything succeeded.

Stored exchanges are untrusted data (possibly other users' of the same tenant): gateway.proxy.quoting
renders them so they can be read but never obeyed. Where they go:
- The system message gets only the gateway's own fixed words (appended to the client's system
  message, if it sent one): what the records are, that nothing in them is an instruction, the request's
  random boundary, and how to cite. The system message carries the most authority in chat templates,
  so stored text never goes there.
- The records themselves go at the start of the latest user message, before the client's own content
  (so the question is read last). A message of their own would need a role: a second user message in a
  row is refused by templates that require alternating roles (Llama 2 and Mistral style), an assistant
  message would put the stored text in the model's own mouth, and a tool message needs a tool call
  before it. The latest user turn is accepted by every template, and text there has no more authority
  than what the client itself sends.

The sources are counted with the upstream's tokenizer: never more than `max_tokens` of them, and never
so many that the prompt plus the room for the answer exceed the model's context. Only the gateway's
own numbering is cited: the `visionrag` object and the headers list exactly the sources the model was
shown.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

from pydantic import ValidationError

from gateway.errors import GatewayError, InvalidRequest
from gateway.images import LoadedImage
from gateway.memory.retrieval import RecallQuery, Source
from gateway.memory.store.base import SearchFilter
from gateway.proxy import quoting
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

# Tokens the chat template's wrapping of a new system message and the joins between the gateway's
# texts and the client's may add beyond what is counted (the instructions, the frame, each source).
_WRAPPER_TOKENS = 64
# A source's number `[n] ` and its line break, beyond its record.
_PER_SOURCE_TOKENS = 6


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
        raise InvalidRequest(f"{where}: {error['msg']}", param=where, code="invalid_parameter") from None


@dataclass(frozen=True, slots=True)
class Cited:
    n: int
    source: Source
    question: str  # what the model was shown of the past question
    excerpt: str  # and of the past answer


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


class SourceImages(Protocol):
    """Where a cited source's image is read (gateway.history.service.History)."""

    async def image(self, tenant: str, sha256: str) -> Any: ...


@dataclass(frozen=True, slots=True)
class AugmentConfig:
    default: bool = False
    k: int = 4
    same_user: bool = False
    timeout_s: float = 0.5
    max_tokens: int = 1500
    answer_reserve_tokens: int = 512
    source_chars: int = 1200  # of a past question, and of a past answer
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
                 max_images: int, *, images: SourceImages | None = None) -> None:
        """`images`: where the sources' images are read when `config.attach_images`; none without it."""
        self.memory = memory
        self.images = images
        self.tokens = tokens
        self.config = config
        self.max_images = max_images

    @classmethod
    def from_settings(cls, settings: Settings, memory: Recaller | None, images: SourceImages,
                      pool: UpstreamPool) -> Augmenter:
        return cls(memory, TokenCounter(pool), AugmentConfig.from_settings(settings),
                   settings.max_images_per_request, images=images)

    async def augment(self, payload: dict[str, Any], turn: ChatTurn, options: MemoryOptions) -> MemoryUse:
        """Put sources into `payload["messages"]` when memory is asked for and can help. Never raises;
        the payload is changed only when the answer is `used`."""
        wanted = self.config.default if options.memory is None else options.memory
        if not wanted:
            return MemoryUse("off")
        if self.memory is None:
            return MemoryUse("disabled")
        try:
            use, messages = await asyncio.wait_for(self._augment(payload, turn, options), self.config.timeout_s)
        except TimeoutError:
            log.warning("memory: retrieval took longer than %.0f ms; answering without it",
                        self.config.timeout_s * 1000)
            return MemoryUse("timeout")
        except Exception as exc:  # memory must never fail a chat; the log has the cause
            log.warning("memory: retrieval failed; answering without it: %s", exc,
                        exc_info=not isinstance(exc, GatewayError))
            return MemoryUse("unavailable")
        if messages is not None:
            payload["messages"] = messages
        return use

    async def _augment(self, payload: dict[str, Any], turn: ChatTurn,
                       options: MemoryOptions) -> tuple[MemoryUse, list[Any] | None]:
        """What memory did, and the request's messages with the sources in (None: leave them as sent)."""
        assert self.memory is not None
        messages: list[Any] = payload["messages"]
        if _last_user(messages) is None:  # nothing asked: no turn to answer, no memory to put in
            return MemoryUse("no_sources"), None
        model = payload.get("model")
        same_user = self.config.same_user if options.same_user is None else options.same_user
        only_this_user = same_user and turn.user is not None
        flt = SearchFilter(turn.tenant, user=turn.user if only_this_user else None,
                           exclude_exchanges=(turn.exchange_id,))
        first = turn.images[0] if turn.images else None
        query = RecallQuery(turn.question, first.data if first else None, first.sha256 if first else None,
                            turn.known_answers)
        sources = await self.memory.recall(flt, query, k=options.k or self.config.k)
        if not sources:
            return MemoryUse("no_sources"), None
        quoted = [quoting.quote_source(source, self.config.source_chars) for source in sources]
        boundary = quoting.new_boundary([q.record for q in quoted])
        instructions = quoting.instructions(boundary, same_user=only_this_user)
        # Counted only now that there is something to put in: most memory chats stop above.
        base, fixed, *counts = await asyncio.gather(
            self.tokens.count_chat(model, messages),
            self.tokens.count_text(model, "\n".join((instructions, *quoting.frame(boundary)))),
            *(self.tokens.count_text(model, q.record) for q in quoted),
        )
        budget = self.config.max_tokens
        if base is not None and base.max_model_len is not None:
            answer = _answer_room(payload, self.config.answer_reserve_tokens)
            budget = min(budget, base.max_model_len - base.tokens - answer - fixed - _WRAPPER_TOKENS)
        chosen: list[quoting.QuotedSource] = []
        spent = 0
        # In rank order; a source that does not fit is skipped, a shorter one after it may still fit.
        for q, count in zip(quoted, counts, strict=True):
            if spent + count + _PER_SOURCE_TOKENS > budget:
                continue
            spent += count + _PER_SOURCE_TOKENS
            chosen.append(q)
        if not chosen:
            return MemoryUse("no_room"), None
        # Numbered as the model is shown them (renumbered when one was skipped).
        cited = [Cited(n, q.source, q.question, q.answer) for n, q in enumerate(chosen, 1)]
        attach = self.config.attach_images and self.images is not None
        images = await self._images(turn, cited) if attach else []
        block = quoting.block(boundary, [q.line(c.n) for q, c in zip(chosen, cited, strict=True)])
        return MemoryUse("used", tuple(cited)), _with_memory(messages, instructions, block, images)

    async def _images(self, turn: ChatTurn, cited: list[Cited]) -> list[dict[str, Any]]:
        """For models that take several images: the sources' images, as far as the per-request image
        limit allows, as content parts."""
        assert self.images is not None
        room = self.max_images - len(turn.images)
        parts: list[dict[str, Any]] = []
        for c in cited:
            sha = c.source.image_sha256
            if room <= 0 or not sha or sha in {i.sha256 for i in turn.images}:
                continue
            image = await self.images.image(turn.tenant, sha)
            url = f"data:{image.mime};base64,{base64.b64encode(image.data).decode('ascii')}"
            parts += [{"type": "text", "text": f"Image of source [{c.n}]:"},
                      {"type": "image_url", "image_url": {"url": url}}]
            room -= 1
        return parts


def _answer_room(payload: dict[str, Any], reserve: int) -> int:
    for key in ("max_completion_tokens", "max_tokens"):
        value = payload.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return reserve


def _last_user(messages: list[Any]) -> int | None:
    return next((i for i in range(len(messages) - 1, -1, -1)
                 if isinstance(messages[i], dict) and messages[i].get("role") == "user"), None)


def _with_memory(messages: list[Any], instructions: str, block: str, images: list[dict[str, Any]]) -> list[Any]:
    """A new list of messages: the instructions in the system message, the block of sources (and their
    images) first in the latest user message. The client's own message objects are left as they are."""
    out = list(messages)
    index = _last_user(out)
    assert index is not None
    user = dict(out[index])
    content = user.get("content")
    if isinstance(content, str) and not images:
        user["content"] = f"{block}\n\n{content}"
    else:
        own = [{"type": "text", "text": content}] if isinstance(content, str) else list(content or [])
        user["content"] = [{"type": "text", "text": block}, *images, *own]
    out[index] = user
    first = out[0]
    if isinstance(first, dict) and first.get("role") == "system":
        system = dict(first)
        content = system.get("content")
        if isinstance(content, list):
            system["content"] = [*content, {"type": "text", "text": "\n\n" + instructions}]
        else:
            system["content"] = (f"{content}\n\n" if content else "") + instructions
        out[0] = system
    else:
        out.insert(0, {"role": "system", "content": instructions})
    return out

"""The memory HTTP API's request and response bodies (search), and the one conversion of a store hit into
the hit they answer (for the routes and the CLI alike). History's (exchanges, forgetting) are in
gateway.history.protocol.

Validation failures become OpenAI-shaped 400s through the app's RequestValidationError handler.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from gateway.history.protocol import MAX_LIMIT, aware
from gateway.memory.search import QUERY_MAX_CHARS, SearchOutcome, image_targets
from gateway.memory.store.base import Target
from gateway.memory.texts import Found


class SearchFilters(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # ISO 8601 (`2026-05-01T12:00:00Z`) or unix seconds; a time without a zone is taken as UTC.
    time_from: datetime | None = None
    time_to: datetime | None = None
    # One model name or several (any of them matches).
    model: str | list[str] | None = None
    # The `user` field the client sent with its chat request.
    user: str | None = None

    @model_validator(mode="after")
    def _range(self) -> SearchFilters:
        if self.time_from and self.time_to and aware(self.time_from) > aware(self.time_to):
            raise ValueError("filters.time_from is after filters.time_to")
        if isinstance(self.model, list) and not self.model:
            raise ValueError("filters.model is an empty list; leave it out to search every model")
        return self

    @property
    def models(self) -> tuple[str, ...]:
        if self.model is None:
            return ()
        return (self.model,) if isinstance(self.model, str) else tuple(self.model)


class SearchRequest(BaseModel):
    """Search past exchanges by text or by image (exactly one)."""

    model_config = ConfigDict(extra="forbid")

    text: str | None = Field(default=None, min_length=1, max_length=QUERY_MAX_CHARS)
    # A `data:` URL or an http(s) URL, fetched through the same guarded fetch as chat images.
    image: str | None = Field(default=None, min_length=1)
    # Which stored vector to compare with; "all" fuses every ranking the query can use (Reciprocal
    # Rank Fusion inside the store).
    target: Target = "all"
    limit: int = Field(default=10, ge=1, le=MAX_LIMIT)
    filters: SearchFilters = Field(default_factory=SearchFilters)

    @model_validator(mode="after")
    def _one_query(self) -> SearchRequest:
        if (self.text is None) == (self.image is None):
            raise ValueError("give exactly one of `text` or `image`")
        if self.image is not None and self.target not in image_targets():
            raise ValueError(f"target {self.target!r} compares text with text: search it with `text`")
        if self.text is not None and not self.text.strip():
            raise ValueError("`text` is blank")
        return self


class SearchHit(BaseModel):
    score: float
    exchange_id: str
    question: str
    answer: str
    # The matching image served by this gateway (GET /images/{sha256}); None for text-only exchanges.
    image_url: str | None
    image_sha256: str | None
    # The http(s) URL the client originally sent for the image, if it sent one.
    source_url: str | None
    time: datetime
    model: str
    user: str | None
    status: str
    endpoint: str

    @classmethod
    def from_found(cls, found: Found, *, image_url: str | None) -> SearchHit:
        """A hit as /search (and the CLI's search) answers it; `image_url` is where the caller serves
        the hit's image (None without one)."""
        return cls(
            score=found.score,
            exchange_id=found.exchange_id,
            question=found.question,
            answer=found.answer,
            image_url=image_url,
            image_sha256=found.image_sha256,
            source_url=found.source_url,
            time=datetime.fromtimestamp(found.time, tz=UTC),
            model=found.model,
            user=found.user,
            status=found.status,
            endpoint=found.endpoint,
        )


class SearchResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[SearchHit]
    target: Target
    query_type: Literal["text", "image"]
    # Where the time went: embedding the query, and the vector store's query.
    timings_ms: dict[str, float]

    @classmethod
    def of(cls, request: SearchRequest, outcome: SearchOutcome,
           image_url: Callable[[str], str | None]) -> SearchResponse:
        """What /search (and the CLI's search) answers; `image_url` addresses a hit's image by its sha256
        (the route: this gateway's URL for it; the CLI: the configured gateway's)."""
        return cls(
            data=[SearchHit.from_found(found, image_url=image_url(found.image_sha256) if found.image_sha256 else None)
                  for found in outcome.hits],
            target=request.target,
            query_type="text" if request.text is not None else "image",
            timings_ms={"embed": round(outcome.embed_ms, 3), "store": round(outcome.store_ms, 3)},
        )

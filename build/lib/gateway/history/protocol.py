"""The history HTTP API's request and response bodies: exchanges, pages of them, forgetting; and the API's
times (ISO 8601 or unix seconds, UTC when no zone is given), for the routes and the CLI alike.

Validation failures become OpenAI-shaped 400s through the app's RequestValidationError handler.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

# The most rows one page (or one search) answers with.
MAX_LIMIT = 100


class ExchangeImage(BaseModel):
    sha256: str
    mime: str
    url: str
    source_url: str | None


class ExchangeResponse(BaseModel):
    object: Literal["exchange"] = "exchange"
    id: str
    time: datetime
    endpoint: str
    model: str
    user: str | None
    status: str
    question: str
    answer: str
    messages: list[dict[str, str]]
    images: list[ExchangeImage]
    finish_reason: str | None
    usage: dict[str, Any] | None
    latency_ms: float
    # The past exchanges memory gave the model as sources [n] for this answer (none without memory).
    sources: list[dict[str, Any]] = Field(default_factory=list)


class ExchangeSummary(BaseModel):
    """One row of GET /exchanges: an exchange without its messages and usage (GET /exchanges/{id})."""

    id: str
    time: datetime
    endpoint: str
    model: str
    user: str | None
    status: str
    question: str
    answer: str
    images: list[ExchangeImage]


class ExchangeList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ExchangeSummary]
    # Pass as `cursor` for the next (older) page; null on the last page.
    next_cursor: str | None
    has_more: bool

def aware(moment: datetime) -> datetime:
    """A time of the API (or the CLI's options) with its zone; one without a zone is taken as UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def unix(moment: datetime | None) -> float | None:
    """A time of the API (or the CLI's options) in unix seconds."""
    return None if moment is None else aware(moment).timestamp()


class ForgetRequest(BaseModel):
    """POST /exchanges/forget: every exchange of `user`, and/or created before `before` (one at least)."""

    model_config = ConfigDict(extra="forbid")

    user: str | None = None
    # ISO 8601 or unix seconds; a time without a zone is taken as UTC.
    before: datetime | None = None

    @model_validator(mode="after")
    def _something(self) -> ForgetRequest:
        if self.user is None and self.before is None:
            raise ValueError("give `user`, `before`, or both")
        return self


class ForgetResponse(BaseModel):
    object: Literal["forget.result"] = "forget.result"
    deleted: int

"""Request and response shapes the gateway defines itself (the OpenAI ones pass through)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class MemoryOptions(BaseModel):
    """The `visionrag` extension object of a chat request (`extra_body={"visionrag": {...}}` in the
    OpenAI SDK). Removed before the request is forwarded."""

    model_config = ConfigDict(extra="forbid")

    memory: bool | None = Field(default=None, description="put relevant past exchanges into the answer "
                                "(default: the gateway's VISIONRAG_MEMORY_CHAT_DEFAULT)")
    k: int | None = Field(default=None, ge=1, le=20, description="sources at most")
    same_user: bool | None = Field(default=None, description="only exchanges with this request's `user`")


class Citation(BaseModel):
    n: int = Field(description="the number the model cites it by: [n]")
    exchange_id: str
    score: float = Field(description="fused rank score (Reciprocal Rank Fusion): higher ranks first")
    question: str = Field(description="the excerpt of the past question the model was shown")
    answer: str = Field(description="the excerpt of the past answer the model was shown")
    image_url: str | None = Field(description="the past exchange's image on this gateway, if it had one")
    time: datetime


class MemoryInfo(BaseModel):
    """The `visionrag` object added to a non-streamed completion when memory was asked for."""

    exchange_id: str
    memory: Literal["used", "no_sources", "off", "disabled", "unavailable", "timeout", "no_room"]
    sources: list[Citation]


class PredictRequest(BaseModel):
    """The original LitServe service's request, kept for its clients."""

    model_config = ConfigDict(extra="forbid")

    image_url: str = Field(description="data: URL or http(s) URL of the image")
    user_query: str = Field(min_length=1, max_length=32_000)
    max_tokens: int = Field(default=256, ge=1, le=32_768)
    model: str | None = Field(default=None, description="defaults to the gateway's default model")
    visionrag: MemoryOptions | None = None


class PredictResponse(BaseModel):
    output: str
    visionrag: MemoryInfo | None = None

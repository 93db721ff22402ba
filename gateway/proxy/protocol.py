"""Request and response shapes the gateway defines itself (the OpenAI ones pass through)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class PredictRequest(BaseModel):
    """The original LitServe service's request, kept for its clients."""

    model_config = ConfigDict(extra="forbid")

    image_url: str = Field(description="data: URL or http(s) URL of the image")
    user_query: str = Field(min_length=1, max_length=32_000)
    max_tokens: int = Field(default=256, ge=1, le=32_768)
    model: str | None = Field(default=None, description="defaults to the gateway's default model")


class PredictResponse(BaseModel):
    output: str

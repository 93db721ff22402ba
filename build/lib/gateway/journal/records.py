"""What one exchange looks like once recorded."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Status = Literal["complete", "incomplete", "error"]


@dataclass(slots=True, frozen=True)
class ImageRef:
    """An image the model saw. The bytes live in the BlobStore under `sha256`."""

    sha256: str
    mime: str
    # The http(s) URL the client gave, if any; None for `data:` URLs (the bytes are the source).
    source_url: str | None = None


@dataclass(slots=True)
class Exchange:
    id: str
    created_at: float  # unix seconds
    endpoint: str  # "chat.completions", "predict" or "ingest" (bulk-loaded documents)
    model: str
    tenant: str
    user: str | None
    # The request's messages as text: [{"role": "user", "text": "..."}]. Images are in `images`.
    messages: list[dict[str, str]]
    images: list[ImageRef]
    answer: str
    finish_reason: str | None
    usage: dict[str, Any] | None
    latency_ms: float
    status: Status = "complete"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def question(self) -> str:
        """The text of the last user message: what the exchange was asked."""
        for message in reversed(self.messages):
            if message.get("role") == "user" and message.get("text"):
                return message["text"]
        return ""

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Exchange:
        images = [ImageRef(**image) for image in data.get("images", [])]
        return cls(**{**data, "images": images})

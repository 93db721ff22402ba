"""What the store holds and answers: points (named vectors and a payload) and hits.

The payload's fields are defined here once (`PointPayload`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from gateway.memory.store.schema import VectorValue


def rfc3339(moment: float | datetime) -> str:
    """Qdrant's datetime payload index wants RFC 3339; always UTC so range filters compare correctly.

    `moment` is unix seconds or a datetime (a naive one is taken as UTC).
    """
    if isinstance(moment, datetime):
        moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
        value = moment.astimezone(UTC)
    else:
        value = datetime.fromtimestamp(moment, tz=UTC)
    return value.isoformat().replace("+00:00", "Z")


@dataclass(slots=True)
class StorePoint:
    """A point ready for the store: its id, named vectors (a subset of the schema's) and payload (as
    `PointPayload.encode` writes it)."""

    id: str
    vectors: dict[str, VectorValue]
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class PointPayload:
    """What a point says of its exchange (and image); the store's filters read these fields.

    No question, answer or client image URL: the store keeps deleted points' payload in its files (and
    its WAL) until a purge, so text kept here could outlive a deletion (gateway.memory.texts).
    """

    exchange_id: str
    tenant: str
    time: float  # unix seconds
    model: str
    user: str | None
    endpoint: str
    status: str
    image_count: int = 0
    image_index: int | None = None  # None for a text-only exchange's point
    image_sha256: str | None = None
    image_mime: str | None = None

    def encode(self) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "exchange_id": self.exchange_id,
            "tenant": self.tenant,
            "time": rfc3339(self.time),  # the datetime index's form; `ts` is what hits read back
            "ts": self.time,
            "model": self.model,
            "user": self.user,
            "endpoint": self.endpoint,
            "status": self.status,
            "image_count": self.image_count,
            "image_index": self.image_index,
        }
        if self.image_index is not None:
            payload["image_sha256"] = self.image_sha256
            payload["image_mime"] = self.image_mime
        return payload


@dataclass(slots=True)
class Hit:
    id: str
    score: float
    payload: dict[str, Any] = field(default_factory=dict)

"""What the store holds and answers: points (named vectors and a payload) and hits.

The payload's fields are defined here once (`PointPayload`): written by `encode`, read back by
`Hit.decode`, which both adapters call, so nothing above the store parses a payload.
"""

from __future__ import annotations

from collections.abc import Mapping
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


@dataclass(frozen=True, slots=True, kw_only=True)
class Hit(PointPayload):
    """A point a query found: its payload decoded, its id and its score."""

    id: str
    score: float

    @classmethod
    def decode(cls, point_id: object, score: float, payload: Mapping[str, Any] | None) -> Hit:
        """A hit from what either adapter got back. Keys that earlier versions wrote and no longer read
        (`question`, `answer`, `image_url`) are left out; a missing field reads as empty (a missing status
        as "complete"), as the readers before this one read it."""
        raw = payload or {}
        user, index = raw.get("user"), raw.get("image_index")
        sha256, mime = raw.get("image_sha256"), raw.get("image_mime")
        return cls(
            id=str(point_id),
            score=float(score),
            exchange_id=str(raw.get("exchange_id", "")),
            tenant=str(raw.get("tenant", "")),
            time=float(raw.get("ts") or 0.0),
            model=str(raw.get("model") or ""),
            user=None if user is None else str(user),
            endpoint=str(raw.get("endpoint") or ""),
            status=str(raw.get("status") or "complete"),
            image_count=int(raw.get("image_count") or 0),
            image_index=index if isinstance(index, int) else None,
            image_sha256=None if sha256 is None else str(sha256),
            image_mime=None if mime is None else str(mime),
        )

"""Turning journal exchanges into vector-store points.

One point per image (an exchange with three images yields three points); a text-only exchange yields
one point without an image vector. The question and answer vectors live on the exchange's FIRST point
only: a text search then returns each exchange once instead of once per image, and the store does not
hold identical copies of the same text vectors.

Point ids are uuid5(exchange id, image index): deterministic, so re-ingesting an exchange after a crash
overwrites the same points instead of duplicating them.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from gateway.journal import Exchange
from gateway.memory.schema import CLIP_DIM, SCHEMA, TEXT_MAX_CHARS, VectorValue

# Fixed forever: changing it would give every stored exchange new point ids (duplicates on re-ingest).
POINT_NAMESPACE = uuid.UUID("6f1c1a2e-8d1b-5b0e-9a51-3c0f6f0d2a77")

# The named vectors come from one table (gateway.memory.schema); CLIP's three share one space.
VECTOR_NAMES: tuple[str, ...] = tuple(spec.name for spec in SCHEMA)
CLIP_NAMES: tuple[str, ...] = ("image", "question", "answer")
DIM = CLIP_DIM

# What happens to each journal status. "error" exchanges (the upstream failed) have no answer worth
# finding and would crowd search results with failures: they are skipped and marked ingested. A cut-off
# stream ("incomplete") still has a real question, image and partial answer: stored, status in payload.
STORED_STATUSES = frozenset({"complete", "incomplete"})


def point_id(exchange_id: str, image_index: int) -> str:
    return str(uuid.uuid5(POINT_NAMESPACE, f"{exchange_id}/{image_index}"))


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
class PointPlan:
    """A point before embedding: which image (by sha256) and which texts get vectors."""

    id: str
    payload: dict[str, Any]
    image_sha256: str | None
    question: str | None
    answer: str | None


@dataclass(slots=True)
class StorePoint:
    """A point ready for the store: its id, named vectors (a subset of VECTOR_NAMES) and payload."""

    id: str
    vectors: dict[str, VectorValue]
    payload: dict[str, Any] = field(default_factory=dict)


def base_payload(exchange: Exchange) -> dict[str, Any]:
    return {
        "exchange_id": exchange.id,
        "tenant": exchange.tenant,
        "time": rfc3339(exchange.created_at),
        "ts": exchange.created_at,
        "model": exchange.model,
        "user": exchange.user,
        "endpoint": exchange.endpoint,
        "status": exchange.status,
        # No question or answer here: the store keeps deleted points' payload in its files (and its
        # WAL) until a vacuum, so text kept here could outlive a deletion. Hits get their text from
        # the journal (gateway.memory.texts), which forgets it for good.
        "image_count": len(exchange.images),
    }


def plan_points(exchange: Exchange) -> list[PointPlan]:
    """The points an exchange becomes; empty when it is not stored (see STORED_STATUSES)."""
    if exchange.status not in STORED_STATUSES:
        return []
    # Cut as a chat's retrieval cuts its question, so the vectors it computed are the ones ingest reuses.
    question = exchange.question[:TEXT_MAX_CHARS].strip() or None
    answer = exchange.answer[:TEXT_MAX_CHARS].strip() or None
    base = base_payload(exchange)
    if not exchange.images:
        if question is None and answer is None:
            return []  # nothing to embed: no image and no text
        return [PointPlan(point_id(exchange.id, 0), {**base, "image_index": None}, None, question, answer)]
    plans = []
    for index, image in enumerate(exchange.images):
        # No client URL either (it may be a pre-signed link): like the texts, hits get it from the
        # journal. Points written by earlier versions still carry an `image_url`, which readers ignore.
        payload = {**base, "image_index": index, "image_sha256": image.sha256, "image_mime": image.mime}
        first = index == 0
        plans.append(
            PointPlan(
                point_id(exchange.id, index),
                payload,
                image.sha256,
                question if first else None,
                answer if first else None,
            )
        )
    return plans

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
from dataclasses import dataclass, replace
from typing import Any

from gateway.journal import Exchange
from gateway.memory.embed import TEXT_MAX_CHARS
from gateway.memory.store.points import PointPayload

# Fixed forever: changing it would give every stored exchange new point ids (duplicates on re-ingest).
POINT_NAMESPACE = uuid.UUID("6f1c1a2e-8d1b-5b0e-9a51-3c0f6f0d2a77")

# What happens to each journal status. "error" exchanges (the upstream failed) have no answer worth
# finding and would crowd search results with failures: they are skipped and marked ingested. A cut-off
# stream ("incomplete") still has a real question, image and partial answer: stored, status in payload.
STORED_STATUSES = frozenset({"complete", "incomplete"})


def point_id(exchange_id: str, image_index: int) -> str:
    return str(uuid.uuid5(POINT_NAMESPACE, f"{exchange_id}/{image_index}"))


@dataclass(slots=True)
class PointPlan:
    """A point before embedding: which image (by sha256) and which texts get vectors."""

    id: str
    payload: dict[str, Any]
    image_sha256: str | None
    question: str | None
    answer: str | None


def base_payload(exchange: Exchange) -> PointPayload:
    """What every point of the exchange says of it (no texts: see PointPayload); the image fields are
    each point's own."""
    return PointPayload(
        exchange_id=exchange.id,
        tenant=exchange.tenant,
        time=exchange.created_at,
        model=exchange.model,
        user=exchange.user,
        endpoint=exchange.endpoint,
        status=exchange.status,
        image_count=len(exchange.images),
    )


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
        return [PointPlan(point_id(exchange.id, 0), base.encode(), None, question, answer)]
    plans = []
    for index, image in enumerate(exchange.images):
        # No client URL either (it may be a pre-signed link): like the texts, hits get it from the
        # journal. Points written by earlier versions still carry an `image_url`, which readers ignore.
        payload = replace(base, image_index=index, image_sha256=image.sha256, image_mime=image.mime).encode()
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

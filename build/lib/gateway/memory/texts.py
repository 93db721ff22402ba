"""Hits get their question, answer and client image URL from the journal, not from the store.

The store keeps none of them (see store.points.PointPayload): a deleted point's payload survives in
Qdrant's segment files and WAL until a purge, and only the journal can forget for good. So every query's
hits pass through `JournalTexts.fill`, which pairs each hit with its exchange's question and answer and
the URL the client sent for the hit's image (which may be a pre-signed link), and drops hits whose
exchange is no longer there: a deletion is final for search and retrieval the moment the journal row is
gone, even before the store has deleted the points.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

from gateway.journal import Exchange, Journal
from gateway.memory.store.points import Hit


@dataclass(frozen=True, slots=True, kw_only=True)
class Found(Hit):
    """A hit with its exchange's texts, as the journal has them."""

    question: str
    answer: str
    source_url: str | None  # the URL the client gave for the hit's image, if it gave one

    @classmethod
    def of(cls, hit: Hit, question: str, answer: str, source_url: str | None) -> Found:
        return cls(**{field.name: getattr(hit, field.name) for field in fields(Hit)},
                   question=question, answer=answer, source_url=source_url)


class JournalTexts:
    def __init__(self, journal: Journal) -> None:
        self.journal = journal

    def fill(self, hits: Sequence[Hit], tenant: str) -> list[Found]:
        """`hits` (in their order) with their exchanges' texts; those of forgotten exchanges, or of
        another tenant's, left out."""
        exchanges = {exchange_id: self.journal.get(exchange_id) for exchange_id in {hit.exchange_id for hit in hits}}
        found = []
        for hit in hits:
            exchange = exchanges.get(hit.exchange_id)
            if exchange is None or exchange.tenant != tenant:
                continue  # forgotten (or its points outlived it): never returned
            found.append(Found.of(hit, exchange.question, exchange.answer, _source_url(exchange, hit.image_index)))
        return found


def _source_url(exchange: Exchange, index: int | None) -> str | None:
    if index is None or not 0 <= index < len(exchange.images):
        return None
    return exchange.images[index].source_url

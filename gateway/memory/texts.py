"""Hits get their question, answer and client image URL from the journal, not from the store.

The store keeps none of them (see points.base_payload): a deleted point's payload survives in Qdrant's
segment files and WAL until a purge, and only the journal can forget for good. So every query passes
through `JournalTexts`, which fills each hit's `question`/`answer` and `image_url` (the URL the client
sent, which may be a pre-signed link) from the journal and drops hits whose exchange is no longer there:
a deletion is final for search and retrieval the moment the journal row is gone, even before the store
has deleted the points. Points written by earlier versions still carry an `image_url` of their own: it
is replaced by the journal's like the rest.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gateway.journal import Exchange, Journal
from gateway.memory.store.base import Hit, Probe, SearchFilter, VectorStore


class JournalTexts:
    """A VectorStore whose `query` answers hits with the journal's texts; everything else is the store's."""

    def __init__(self, store: VectorStore, journal: Journal) -> None:
        self.store = store
        self.journal = journal

    def query(self, probes: Sequence[Probe], flt: SearchFilter, limit: int) -> list[Hit]:
        hits = self.store.query(probes, flt, limit)
        exchanges = {exchange_id: self.journal.get(exchange_id)
                     for exchange_id in {str(hit.payload.get("exchange_id", "")) for hit in hits}}
        kept = []
        for hit in hits:
            exchange = exchanges.get(str(hit.payload.get("exchange_id", "")))
            if exchange is None or exchange.tenant != flt.tenant:
                continue  # forgotten (or its points outlived it): never returned
            hit.payload["question"], hit.payload["answer"] = exchange.question, exchange.answer
            hit.payload["image_url"] = _source_url(exchange, hit.payload.get("image_index"))
            kept.append(hit)
        return kept

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


def _source_url(exchange: Exchange, index: object) -> str | None:
    """The URL the client gave for the hit's image, if it gave one."""
    if not isinstance(index, int) or not 0 <= index < len(exchange.images):
        return None
    return exchange.images[index].source_url

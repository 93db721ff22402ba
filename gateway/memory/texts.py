"""Hits get their question and answer from the journal, not from the store.

The store keeps no text (see points.base_payload): a deleted point's payload survives in Qdrant's
segment files and WAL until a vacuum, and only the journal can forget text for good. So every query
passes through `JournalTexts`, which fills each hit's `question`/`answer` from the journal and drops
hits whose exchange is no longer there: a deletion is final for search and retrieval the moment the
journal row is gone, even before the store has deleted the points.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gateway.journal import Journal
from gateway.memory.store.base import Hit, Probe, SearchFilter, VectorStore


class JournalTexts:
    """A VectorStore whose `query` answers hits with the journal's texts; everything else is the store's."""

    def __init__(self, store: VectorStore, journal: Journal) -> None:
        self.store = store
        self.journal = journal

    def query(self, probes: Sequence[Probe], flt: SearchFilter, limit: int) -> list[Hit]:
        hits = self.store.query(probes, flt, limit)
        texts = self.journal.texts(str(hit.payload.get("exchange_id", "")) for hit in hits)
        kept = []
        for hit in hits:
            found = texts.get(str(hit.payload.get("exchange_id", "")))
            if found is None:
                continue  # forgotten (or its points outlived it): never returned
            hit.payload["question"], hit.payload["answer"] = found
            kept.append(hit)
        return kept

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

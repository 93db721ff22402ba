"""Search: embed the query (CLIP text or image encoder), query the store, one result per exchange.

Text and images share CLIP's space, so every combination works: a text query against `image`
vectors is text->image, an image query against `answer` vectors is image->text, and so on.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from gateway import metrics
from gateway.memory.embed import ClipEmbedder
from gateway.memory.store.base import Hit, Probe, SearchFilter, Target, VectorStore, probes_for


@dataclass(slots=True)
class SearchOutcome:
    hits: list[Hit]
    embed_ms: float
    store_ms: float


class Searcher:
    def __init__(self, embedder: ClipEmbedder, store: VectorStore) -> None:
        self.embedder = embedder
        self.store = store

    def search(
        self,
        flt: SearchFilter,
        *,
        text: str | None = None,
        image: bytes | None = None,
        target: Target = "all",
        limit: int = 10,
    ) -> SearchOutcome:
        """Exactly one of `text` / `image`. Blocking (model + store): call it from a worker thread."""
        if (text is None) == (image is None):
            raise ValueError("give exactly one of text or image")
        started = time.perf_counter()
        if text is not None:
            vector = self.embedder.embed_texts([text])[0]
        else:
            vector = self.embedder.embed_images([image])[0]  # type: ignore[list-item]
        embedded = time.perf_counter()
        hits = self.query(probes_for(vector.tolist(), target), flt, limit=limit)
        done = time.perf_counter()
        metrics.EMBED_SEARCH.observe(embedded - started)
        metrics.STORE_QUERY.observe(done - embedded)
        return SearchOutcome(hits, (embedded - started) * 1000, (done - embedded) * 1000)

    def query(self, probes: list[Probe], flt: SearchFilter, *, limit: int) -> list[Hit]:
        """The store query alone, deduplicated to one hit (the best) per exchange.

        Text vectors live on one point per exchange, so `question`/`answer` hits are already unique;
        image and fused queries can hit several images of one exchange, hence the over-fetch.
        """
        text_only = all(probe.using in ("question", "answer") for probe in probes) and len(probes) == 1
        fetch = limit if text_only else limit * 2
        seen: set[str] = set()
        unique: list[Hit] = []
        for hit in self.store.query(probes, flt, fetch):
            exchange_id = str(hit.payload.get("exchange_id", hit.id))
            if exchange_id in seen:
                continue
            seen.add(exchange_id)
            unique.append(hit)
            if len(unique) == limit:
                break
        return unique

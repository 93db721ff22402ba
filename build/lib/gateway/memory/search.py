"""Search: embed the query, query the store with one probe per signal (fused there), one result per exchange.

Signals (gateway.memory.store.schema): CLIP puts text and images in one space, so a text query against
`image` vectors is text->image and an image query against `answer` vectors is image->text; the
sentence model (`text`: question and answer passages, MAX_SIM) finds meaning anywhere in a long
answer; BM25 (`terms`) finds exact identifiers. `target="all"` fuses the signals the schema picks for
the query's kind (`VectorSpec.fused_by`; an image query: CLIP's three).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from gateway import metrics
from gateway.memory.embed import TEXT_MAX_CHARS
from gateway.memory.encoders import MODELS, QueryClip, QueryText, available, fused, per_image, searchable_by
from gateway.memory.store.base import Probe, SearchFilter, Target, VectorStore
from gateway.memory.store.schema import ALL, SCHEMA, Schema, VectorValue
from gateway.memory.texts import Found, JournalTexts

# The longest text a query embeds: /search refuses a longer one, a chat's retrieval reads no further into
# its message (the cap on everything embedded, stored exchanges included).
QUERY_MAX_CHARS = TEXT_MAX_CHARS


@dataclass(slots=True)
class SearchOutcome:
    hits: list[Found]
    embed_ms: float
    store_ms: float


def image_targets(schema: Schema = SCHEMA) -> tuple[str, ...]:
    """The targets an image query may compare with: the vectors of a model that embeds images, or all."""
    return (*(spec.name for spec in schema if searchable_by(spec, "image")), ALL)


def text_probes(clip: QueryClip, text_encoders: QueryText | None, text: str,
                target: Target | Sequence[str] = ALL, *, min_scores: Mapping[str, float | None] | None = None,
                schema: Schema = SCHEMA) -> list[Probe]:
    """The probes for a text query on `target` (one name, several, or "all": see encoders.fused):
    what /search, the CLI and retrieval for chat send to the store, in the schema's order, each with its
    minimum from `min_scores` (none without). The query vector is computed once per model. A vector
    whose model is missing (no text encoders) is not probed; without a minimum, a term probe keeps every
    point sharing a term."""
    if isinstance(target, str):
        names: Sequence[str] = fused(schema, "text", text_encoders) if target == ALL else (target,)
    else:
        names = target
    vectors: dict[str, VectorValue | None] = {}  # model -> the query's vector
    probes: list[Probe] = []
    for spec in schema:
        if spec.name not in names or not available(spec, text_encoders):
            continue
        if spec.model not in vectors:
            vectors[spec.model] = MODELS[spec.model].query(clip, text_encoders, text)
        vector = vectors[spec.model]
        if vector is not None:
            probes.append(Probe(vector, spec.name, (min_scores or {}).get(spec.name)))  # type: ignore[arg-type]
    return probes


def image_query_vector(embedder: QueryClip, store: VectorStore, tenant: str, image: bytes,
                       sha256: str | None = None) -> np.ndarray:
    """CLIP's vector for a query image. An image asked about again (the same bytes, by sha256) already
    has its vector in this tenant's memory: that one is taken, and the vision model does not run."""
    stored = store.image_vector(tenant, sha256) if sha256 else None
    if stored is not None:
        return np.asarray(stored, dtype=np.float32)
    return embedder.embed_images([image])[0]


class Searcher:
    def __init__(self, embedder: QueryClip, store: VectorStore, texts: JournalTexts,
                 text: QueryText | None = None, *, schema: Schema = SCHEMA) -> None:
        """`schema`: the vectors to search (the store's)."""
        self.embedder = embedder
        self.store = store
        self.texts = texts
        self.text = text
        self.schema = schema

    def search(
        self,
        flt: SearchFilter,
        *,
        text: str | None = None,
        image: bytes | None = None,
        image_sha256: str | None = None,
        target: Target = "all",
        limit: int = 10,
    ) -> SearchOutcome:
        """Exactly one of `text` / `image` (with its sha256, if known). Blocking (model + store): call it
        from a worker thread."""
        if (text is None) == (image is None):
            raise ValueError("give exactly one of text or image")
        started = time.perf_counter()
        if text is not None:
            probes = text_probes(self.embedder, self.text, text, target, schema=self.schema)
        else:
            if target not in image_targets(self.schema):
                raise ValueError(f"an image query compares with CLIP's vectors only, not {target!r}")
            vector = image_query_vector(self.embedder, self.store, flt.tenant, image, image_sha256).tolist()  # type: ignore[arg-type]
            names = fused(self.schema, "image", self.text) if target == ALL else (target,)
            probes = [Probe(vector, name) for name in names]
        embedded = time.perf_counter()
        hits = self.query(probes, flt, limit=limit)
        done = time.perf_counter()
        metrics.EMBED_SEARCH.observe(embedded - started)
        metrics.STORE_QUERY.observe(done - embedded)
        return SearchOutcome(hits, (embedded - started) * 1000, (done - embedded) * 1000)

    def query(self, probes: list[Probe], flt: SearchFilter, *, limit: int) -> list[Found]:
        """The store query alone (its hits with their texts), deduplicated to one hit (the best) per
        exchange.

        Text vectors live on one point per exchange, so a single text probe's hits are already unique;
        image and fused queries can hit several images of one exchange, hence the over-fetch.
        """
        spec = self.schema.get(probes[0].using) if len(probes) == 1 else None
        text_only = spec is not None and not per_image(spec)
        fetch = limit if text_only else limit * 2
        seen: set[str] = set()
        unique: list[Found] = []
        for found in self.texts.fill(self.store.query(probes, flt, fetch), flt.tenant):
            if found.exchange_id in seen:
                continue
            seen.add(found.exchange_id)
            unique.append(found)
            if len(unique) == limit:
                break
        return unique

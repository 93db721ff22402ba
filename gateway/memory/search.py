"""Search: embed the query, query the store with one probe per signal (fused there), one result per exchange.

Signals (gateway.memory.store.schema): CLIP puts text and images in one space, so a text query against
`image` vectors is text->image and an image query against `answer` vectors is image->text; the
sentence model (`text`: question and answer passages, MAX_SIM) finds meaning anywhere in a long
answer; BM25 (`terms`) finds exact identifiers. `target="all"` fuses every signal the query can use
(an image query: CLIP's three).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from gateway import metrics
from gateway.memory.embed import TEXT_MAX_CHARS
from gateway.memory.store.base import Probe, SearchFilter, Target, VectorStore, probes_for
from gateway.memory.store.schema import CLIP_NAMES, Sparse
from gateway.memory.texts import Found, JournalTexts

# A text query on "all" uses CLIP only to find images (text->image): for text against text the sentence
# model and BM25 supersede CLIP's text vectors (77 tokens, weak on terms), and in RRF every weaker
# ranking dilutes the good ones (bench/memory_quality.py measures it).
TEXT_QUERY_ALL = ("image", "text", "terms")

# The longest text a query embeds: /search refuses a longer one, a chat's retrieval reads no further into
# its message (the cap on everything embedded, stored exchanges included).
QUERY_MAX_CHARS = TEXT_MAX_CHARS


class QueryClip(Protocol):
    """What a query asks of CLIP: a ClipEmbedder, or the gateway's BatchedClip (gateway.memory.batching)."""

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray: ...

    def embed_images(self, images: Sequence[bytes]) -> np.ndarray: ...


class QueryText(Protocol):
    """What a query asks of the text encoders: TextEncoders, or the gateway's BatchedText."""

    def sentences(self, texts: Sequence[str]) -> np.ndarray: ...

    def terms_query(self, text: str) -> Sparse: ...


@dataclass(slots=True)
class SearchOutcome:
    hits: list[Found]
    embed_ms: float
    store_ms: float


def text_probes(clip: QueryClip, text_encoders: QueryText | None, text: str,
                target: Target | Sequence[str] = "all", *, clip_min_score: float | None = None,
                text_min_score: float | None = None, terms_min_score: float | None = None) -> list[Probe]:
    """The probes for a text query on `target` (one name, several, or "all": CLIP text->image, the
    sentence model, BM25): what /search, the CLI and retrieval for chat send to the store. Each query
    vector is computed once. Without a minimum, a term probe keeps every point sharing a term."""
    if isinstance(target, str):
        all_names = TEXT_QUERY_ALL if text_encoders is not None else CLIP_NAMES
        names: Sequence[str] = all_names if target == "all" else (target,)
    else:
        names = target
    probes: list[Probe] = []
    clip_names = [name for name in names if name in CLIP_NAMES]
    if clip_names:
        vector = clip.embed_texts([text])[0].tolist()
        probes += [Probe(vector, name, clip_min_score) for name in clip_names]
    if text_encoders is not None and "text" in names:
        probes.append(Probe(text_encoders.sentences([text])[0].tolist(), "text", text_min_score))
    if text_encoders is not None and "terms" in names:
        terms = text_encoders.terms_query(text)
        if terms.indices:  # a query of stopwords only has no terms to match
            probes.append(Probe(terms, "terms", terms_min_score))
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
                 text: QueryText | None = None) -> None:
        self.embedder = embedder
        self.store = store
        self.texts = texts
        self.text = text

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
            probes = text_probes(self.embedder, self.text, text, target)
        else:
            if target not in (*CLIP_NAMES, "all"):
                raise ValueError(f"an image query compares with CLIP's vectors only, not {target!r}")
            vector = image_query_vector(self.embedder, self.store, flt.tenant, image, image_sha256)  # type: ignore[arg-type]
            probes = probes_for(vector.tolist(), target)
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
        text_only = len(probes) == 1 and probes[0].using != "image"
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

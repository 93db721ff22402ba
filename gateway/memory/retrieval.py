"""Retrieval for a chat: the caller's past exchanges that bear on what is being asked now.

Every signal the gateway has goes into one store query (`Probe`s fused with RRF inside the store):
the current image against past images, the question against past questions and past answers. Each
probe keeps only points above its own minimum similarity, so a past exchange is a source because it is
close on at least one signal, and the fusion ranks those that are close on several first. One source
per exchange; the conversation's own earlier turns are left out (the model already has them).

The query vectors are handed to `VectorReuse`, so ingesting this exchange later does not embed the
same question and image again.

Bounded whatever the client sends: the question is read up to /search's text cap (the models read only
its head anyway, CLIP 77 tokens and the sentence model 256, yet tokenize all of it first), and the store
is asked for a bounded number of hits however long the conversation is.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gateway.memory.reuse import VectorReuse
from gateway.memory.search import QUERY_MAX_CHARS, QueryClip, QueryText, image_query_vector
from gateway.memory.search import text_probes as hybrid_text_probes
from gateway.memory.store.base import Probe, SearchFilter, VectorStore
from gateway.memory.texts import JournalTexts

# Over-fetch for the conversation's own answers, which are found and dropped (see `recall`): at most this
# many, so a client's long history does not make the store query (and the journal reads of its hits) grow.
MAX_KNOWN_FETCH = 32


@dataclass(frozen=True, slots=True)
class RecallQuery:
    """What is being asked now."""

    question: str  # the last user message; only its first QUERY_MAX_CHARS are searched by
    image: bytes | None = None  # the first image of the request, if any
    image_sha256: str | None = None
    # Answers already in the conversation: exchanges with these answers are not sources again.
    known_answers: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Source:
    exchange_id: str
    score: float  # the fused (RRF) score: higher ranks first
    question: str
    answer: str
    time: float  # unix seconds
    model: str
    image_sha256: str | None


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Minimum score per signal. CLIP's image-image and text-text cosine similarities live on
    different scales, hence one each; the sentence model's cosine has its own (related passages score
    ~0.5-0.7, unrelated ones below ~0.3); BM25's is a sum of IDF-weighted term weights (one rare
    shared term scores ~1.6 x ln(exchanges), so 6.0 asks for a rare term or several common ones)."""

    image: float = 0.85
    text: float = 0.85
    sentence: float = 0.45
    terms: float = 6.0


class Retriever:
    def __init__(self, embedder: QueryClip, store: VectorStore, texts: JournalTexts, reuse: VectorReuse,
                 text: QueryText | None = None) -> None:
        self.embedder = embedder
        self.store = store
        self.texts = texts
        self.reuse = reuse
        self.text = text

    def recall(self, query: RecallQuery, flt: SearchFilter, *, k: int, thresholds: Thresholds) -> list[Source]:
        """Blocking (model + store): call it from a worker thread. Raises EmbedderError/StoreError."""
        probes: list[Probe] = []
        if query.image is not None:
            image_vector = image_query_vector(self.embedder, self.store, flt.tenant, query.image, query.image_sha256)
            probes.append(Probe(image_vector.tolist(), "image", thresholds.image))
            if query.image_sha256:
                self.reuse.put_image(query.image_sha256, image_vector)
        question = query.question[:QUERY_MAX_CHARS].strip()
        if question:
            # CLIP's near-duplicate questions/answers (its high threshold), the sentence model, BM25.
            text_probes = hybrid_text_probes(self.embedder, self.text, question, ("question", "answer", "text", "terms"),
                                             clip_min_score=thresholds.text, text_min_score=thresholds.sentence,
                                             terms_min_score=thresholds.terms)
            probes += text_probes
            for probe in text_probes:  # ingesting this exchange takes these instead of embedding again
                if probe.using in ("question", "text"):
                    encoder = "clip" if probe.using == "question" else "minilm"
                    self.reuse.put_text(question, np.asarray(probe.vector, dtype=np.float32), encoder)
        if not probes:
            return []
        # Over-fetch: an exchange with several images has several points, and known turns are dropped.
        hits = self.store.query(probes, flt, k * 2 + min(len(query.known_answers), MAX_KNOWN_FETCH))
        sources: list[Source] = []
        seen: set[str] = set()
        for found in self.texts.fill(hits, flt.tenant):
            if found.exchange_id in seen or (found.answer and found.answer in query.known_answers):
                continue
            seen.add(found.exchange_id)
            sources.append(Source(
                exchange_id=found.exchange_id,
                score=found.score,
                question=found.question,
                answer=found.answer,
                time=found.time,
                model=found.model,
                image_sha256=found.image_sha256,
            ))
            if len(sources) == k:
                break
        return sources

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

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from gateway.memory.encoders import MODELS, QueryClip, QueryText
from gateway.memory.reuse import VectorReuse
from gateway.memory.search import QUERY_MAX_CHARS, image_query_vector
from gateway.memory.search import text_probes as hybrid_text_probes
from gateway.memory.store.base import Probe, SearchFilter, VectorStore
from gateway.memory.store.schema import SCHEMA, Schema
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


# The vectors each of the four VISIONRAG_MEMORY_MIN_*_SCORE settings (and Thresholds' keywords) sets: they
# predate a minimum per vector, and their names are not the vectors'. `text` is CLIP's text-text
# similarity; the sentence model's vector `text` is `sentence`.
SETTING_VECTORS = {"image": ("image",), "text": ("question", "answer"), "sentence": ("text",), "terms": ("terms",)}


@dataclass(frozen=True, slots=True, init=False)
class Thresholds:
    """The least score a past exchange needs on each vector a chat's retrieval probes, by vector name;
    a vector left out keeps the schema's (`VectorSpec.recall_min_score`, which says why each is what
    it is). The keywords set the vectors of the settings of that name (SETTING_VECTORS); `scores`
    wins over them."""

    scores: Mapping[str, float]

    def __init__(self, scores: Mapping[str, float] | None = None, *, image: float | None = None,
                 text: float | None = None, sentence: float | None = None, terms: float | None = None) -> None:
        by_setting = {"image": image, "text": text, "sentence": sentence, "terms": terms}
        merged = {name: score for setting, score in by_setting.items() if score is not None
                  for name in SETTING_VECTORS[setting]}
        object.__setattr__(self, "scores", merged | dict(scores or {}))

    @classmethod
    def parse(cls, entries: list[str], **settings: float) -> Thresholds:
        """`entries`: `vector:score` strings (VISIONRAG_MEMORY_MIN_SCORES); `settings`: the keywords."""
        scores = {}
        for entry in entries:
            name, sep, value = entry.rpartition(":")
            if not sep or name not in SCHEMA:
                raise ValueError(f"minimum score entry {entry!r} is not vector:score with a vector of "
                                 f"{list(SCHEMA.names)}")
            scores[name] = float(value)
        return cls(scores, **settings)

    def of(self, schema: Schema) -> dict[str, float | None]:
        """The minimum of every vector of `schema` that a chat's retrieval probes."""
        return {spec.name: self.scores.get(spec.name, spec.recall_min_score) for spec in schema if spec.recalled_by}


class Retriever:
    def __init__(self, embedder: QueryClip, store: VectorStore, texts: JournalTexts, reuse: VectorReuse,
                 text: QueryText | None = None, *, schema: Schema = SCHEMA) -> None:
        """`schema`: the vectors to search (the store's)."""
        self.embedder = embedder
        self.store = store
        self.texts = texts
        self.reuse = reuse
        self.text = text
        self.schema = schema

    def recall(self, query: RecallQuery, flt: SearchFilter, *, k: int, thresholds: Thresholds) -> list[Source]:
        """Blocking (model + store): call it from a worker thread. Raises EmbedderError/StoreError."""
        probes: list[Probe] = []
        min_scores = thresholds.of(self.schema)
        by_image = [spec.name for spec in self.schema if "image" in spec.recalled_by]
        if query.image is not None and by_image:
            image_vector = image_query_vector(self.embedder, self.store, flt.tenant, query.image, query.image_sha256)
            probes += [Probe(image_vector.tolist(), name, min_scores[name]) for name in by_image]
            if query.image_sha256:
                self.reuse.put_image(query.image_sha256, image_vector)
        question = query.question[:QUERY_MAX_CHARS].strip()
        if question:
            # As the schema has it: CLIP's near-duplicate questions/answers (its high threshold), the
            # sentence model, BM25.
            by_text = [spec.name for spec in self.schema if "text" in spec.recalled_by]
            text_probes = hybrid_text_probes(self.embedder, self.text, question, by_text, min_scores=min_scores,
                                             schema=self.schema)
            probes += text_probes
            reused: set[str] = set()
            for probe in text_probes:  # ingesting this exchange takes these instead of embedding again
                model = self.schema[probe.using].model
                if MODELS[model].reusable and model not in reused:
                    reused.add(model)
                    self.reuse.put_text(question, np.asarray(probe.vector, dtype=np.float32), model)
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

"""How the schema's vectors are made: the models (`MODELS`) and the parts of an exchange they read
(`PARTS`), which a `VectorSpec` names (`model`, `reads`).

So a new vector from a model and a part listed here is one row of the schema table; a new part is one
reader here, a new model one entry in MODELS. Ingest (gateway.memory.ingest) embeds every distinct input
of a batch once per model, whichever vectors read it; a query (gateway.memory.search) embeds its text
once per model, whichever vectors it probes.

The models: CLIP (images and texts in one space, so a text query reaches images and an image query
texts), the sentence model and BM25 (gateway.memory.text_embed). Those two run on the text encoders,
which a worker or a searcher may be built without: their vectors are then neither written nor probed.
Only CLIP embeds images: the image paths of ingest and queries (blobs, decoding, the stored vector of an
image asked about again) are CLIP's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from gateway.memory.points import PointPlan
from gateway.memory.store.schema import QueryKind, Schema, Sparse, VectorSpec, VectorValue
from gateway.memory.text_embed import passages


class QueryClip(Protocol):
    """What a query asks of CLIP: a ClipEmbedder, or the gateway's BatchedClip (gateway.memory.batching)."""

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray: ...

    def embed_images(self, images: Sequence[bytes]) -> np.ndarray: ...


class QueryText(Protocol):
    """What a query asks of the text encoders: TextEncoders, or the gateway's BatchedText."""

    def sentences(self, texts: Sequence[str]) -> np.ndarray: ...

    def terms_query(self, text: str) -> Sparse: ...


# --- parts: what of an exchange a vector reads, from the point planned for it --------------------------
@dataclass(frozen=True, slots=True)
class Part:
    read: Callable[[PointPlan], str | list[str] | None]  # None: the point has nothing of it
    # Reads the image's sha256: one vector per image point. Texts are on an exchange's first point only
    # (points.plan_points), so a text vector is one per exchange.
    image: bool = False
    # Several texts, one vector each: a multivector ("multi" in the schema).
    many: bool = False


def _question_passages(plan: PointPlan) -> list[str] | None:
    return ([plan.question] if plan.question else []) + passages(plan.answer or "") or None


def _question_answer(plan: PointPlan) -> str | None:
    return "\n".join(text for text in (plan.question, plan.answer) if text) or None


PARTS: dict[str, Part] = {
    "image": Part(lambda plan: plan.image_sha256, image=True),
    "question": Part(lambda plan: plan.question),
    "answer": Part(lambda plan: plan.answer),
    # The question, then the answer cut into passages (text_embed.passages).
    "question_passages": Part(_question_passages, many=True),
    # Question and answer as one document.
    "question_answer": Part(_question_answer),
}


# --- models ------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Model:
    # Ingest: each of these distinct texts' vectors (the worker's ClipEmbedder and TextEncoders).
    documents: Callable[[Any, Any, list[str]], list[VectorValue]]
    # A text query's vector (QueryClip, QueryText); None when it has nothing to search by.
    query: Callable[[Any, Any, str], VectorValue | None]
    # The queries that may search its vectors.
    queries: tuple[QueryKind, ...] = ("text",)
    # Runs on the text encoders (see the module docstring).
    text_encoders: bool = True
    # A text's vector is the same as a query and as a document: what retrieval computed for a chat's
    # question, that chat's ingest takes (reuse.VectorReuse, keyed by the model's name).
    reusable: bool = True


def _clip_documents(clip: Any, text: Any, texts: list[str]) -> list[VectorValue]:
    # Sorted by length: a batch is padded to its longest text, so mixing short questions with long
    # answers would run the questions at the answers' length.
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    rows = clip.embed_texts([texts[i] for i in order])
    vectors: list[VectorValue] = [[] for _ in texts]
    for i, row in zip(order, rows, strict=True):
        vectors[i] = row.tolist()
    return vectors


def _bm25_query(clip: Any, text: Any, query: str) -> Sparse | None:
    terms = text.terms_query(query)
    return terms if terms.indices else None  # a query of stopwords only has no terms to match


MODELS: dict[str, Model] = {
    "clip": Model(_clip_documents, lambda clip, text, query: clip.embed_texts([query])[0].tolist(),
                  queries=("text", "image"), text_encoders=False),
    "minilm": Model(lambda clip, text, texts: [row.tolist() for row in text.sentences(texts)],
                    lambda clip, text, query: text.sentences([query])[0].tolist()),
    # A BM25 query weighs each term 1, a document by its frequency: not the same vector.
    "bm25": Model(lambda clip, text, texts: list(text.terms_document(texts)), _bm25_query, reusable=False),
}


def check(schema: Schema) -> None:
    """Every vector names a model and a part listed here, of a shape that matches its kind."""
    for spec in schema:
        model, part = MODELS.get(spec.model), PARTS.get(spec.reads)
        if model is None or part is None:
            raise ValueError(f"vector {spec.name!r}: no model {spec.model!r} or no part {spec.reads!r} "
                             "in gateway.memory.encoders")
        if part.many != (spec.kind == "multi") or (part.image and "image" not in model.queries):
            raise ValueError(f"vector {spec.name!r}: model {spec.model!r} cannot make a {spec.kind} vector "
                             f"of {spec.reads!r}")


def available(spec: VectorSpec, text: object | None) -> bool:
    """Whether a worker or a searcher with these text encoders (None: without) makes this vector."""
    return text is not None or not MODELS[spec.model].text_encoders


def per_image(spec: VectorSpec) -> bool:
    return PARTS[spec.reads].image


def searchable_by(spec: VectorSpec, kind: QueryKind) -> bool:
    return kind in MODELS[spec.model].queries


def fused(schema: Schema, kind: QueryKind, text: object | None) -> tuple[str, ...]:
    """What target "all" fuses for a query of this kind: the vectors flagged for it
    (`VectorSpec.fused_by`). Without a model one of them needs (no text encoders), every vector the
    query can use stands in."""
    flagged = [spec for spec in schema if kind in spec.fused_by]
    if all(available(spec, text) for spec in flagged):
        return tuple(spec.name for spec in flagged)
    return tuple(spec.name for spec in schema if searchable_by(spec, kind) and available(spec, text))

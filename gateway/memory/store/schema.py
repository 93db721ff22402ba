"""The vectors every stored exchange has: one table that ingest, both stores and search read.

Both stores' layouts, the points ingest writes and the weights of fused queries follow this table. A
vector made by an encoder that is not listed here also needs that encoder's output in ingest
(`IngestWorker.prepare`, keyed by `VectorSpec.encoder`); to be searched by, its query vector in
`search.text_probes` and its name in `base.Target`; for a chat's retrieval, its probe and minimum score
(`retrieval`). Stores made with other vectors are refused until `visionrag reindex` rebuilds them
(`base.SchemaMismatch`).

- CLIP (`image`, `question`, `answer`): one 512-d space for images and text, so image<->text and
  image<->image search work. CLIP reads only the first 77 tokens of a text.
- `text`: all-MiniLM-L6-v2 sentence vectors of the question and of every passage of the answer, as ONE
  multivector compared with MAX_SIM: an exchange scores by its best passage, so a fact in the last
  paragraph of a long answer counts as much as the first. One point per exchange (not one per
  passage) keeps search and retrieval deduplication, payload and deletion per exchange unchanged.
- `terms`: BM25 sparse vector of question + answer with Qdrant's IDF modifier (the store keeps the
  document frequencies), for exact terms: identifiers, error codes, column names, ports.

Each vector also has its weight in a fused query (weighted RRF as Qdrant computes it: rank r in a probe
of weight w counts as rank r / w; see store.base.RRF_K). BM25's is 2, so its second place counts like the
sentence model's first: BM25 ranks by the query's own words weighted by their rarity, while the small
sentence model often ranks near-ties among answers that look alike, and alone BM25 is the stronger signal
on every kind of query but paraphrases (bench/memory_quality.py measures each alone and fused).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["dense", "sparse", "multi"]
# Which encoder makes the vector, from which part of the exchange:
#   clip_image: the image; clip_question / clip_answer: that text through CLIP's text encoder;
#   minilm_passages: the question and the answer's passages; bm25: question + answer.
Encoder = Literal["clip_image", "clip_question", "clip_answer", "minilm_passages", "bm25"]


@dataclass(frozen=True, slots=True)
class VectorSpec:
    name: str
    kind: Kind
    size: int | None  # None for sparse vectors
    encoder: Encoder
    distance: Literal["cosine"] | None = "cosine"  # None for sparse (dot product of weights, IDF-scaled)
    fusion_weight: float = 1.0  # this vector's ranking in a fused query (weighted RRF; see above)


CLIP_DIM = 512
MINILM_DIM = 384

SCHEMA: tuple[VectorSpec, ...] = (
    VectorSpec("image", "dense", CLIP_DIM, "clip_image"),
    VectorSpec("question", "dense", CLIP_DIM, "clip_question"),
    VectorSpec("answer", "dense", CLIP_DIM, "clip_answer"),
    VectorSpec("text", "multi", MINILM_DIM, "minilm_passages"),
    VectorSpec("terms", "sparse", None, "bm25", distance=None, fusion_weight=2.0),
)
BY_NAME = {spec.name: spec for spec in SCHEMA}
# The vectors in CLIP's one space (image and text alike): an image query can use only these.
CLIP_NAMES: tuple[str, ...] = tuple(spec.name for spec in SCHEMA if spec.encoder.startswith("clip_"))


def specs(kind: Kind) -> tuple[VectorSpec, ...]:
    return tuple(spec for spec in SCHEMA if spec.kind == kind)


@dataclass(frozen=True, slots=True)
class Sparse:
    """A sparse vector: term ids and their weights (BM25's term frequencies; the store applies IDF)."""

    indices: tuple[int, ...]
    values: tuple[float, ...]


# What a named vector holds in a point: dense, sparse, or several dense (multi).
VectorValue = list[float] | Sparse | list[list[float]]

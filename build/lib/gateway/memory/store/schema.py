"""The vectors every stored exchange has: one table that ingest, both stores, search and a chat's
retrieval read.

A row (`VectorSpec`) says what the store keeps (name, kind, size, distance or sparse modifier), how it
is made (a model, reading one part of the exchange: keys of `gateway.memory.encoders.MODELS` and
`PARTS`), and how queries use it: its weight in a fused query, which queries' target "all" fuses it,
and which queries of a chat's retrieval probe it, with what least score. A new vector from a model and a
part listed there is one more row here (and a new model or part, one more entry there). The `target`
values of /search and the CLI's and the UI's choices follow this table. Stores made with other vectors
are refused until `visionrag reindex` rebuilds them (`base.SchemaMismatch`).

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

What "all" fuses: for a text query CLIP only finds images (text->image): against text the sentence model
and BM25 supersede CLIP's text vectors (77 tokens, weak on terms), and in RRF every weaker ranking dilutes
the good ones (bench/memory_quality.py measures it). An image query can only use CLIP's three.

A chat's retrieval keeps a past exchange only where it is close on some signal: a minimum per vector.
CLIP's image-image and text-text cosine similarities live on different scales, hence 0.85 each; the
sentence model's cosine has its own (related passages score ~0.5-0.7, unrelated ones below ~0.3); BM25's
is a sum of IDF-weighted term weights (one rare shared term scores ~1.6 x ln(exchanges), so 6.0 asks for
a rare term or several common ones). Settings override them (gateway.memory.retrieval.Thresholds).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

Kind = Literal["dense", "sparse", "multi"]
# What a query searches with: a text, or an image.
QueryKind = Literal["text", "image"]
ALL = "all"  # the target that fuses several vectors: no vector has this name


@dataclass(frozen=True, slots=True)
class VectorSpec:
    name: str
    kind: Kind
    size: int | None  # None for sparse vectors
    # What makes it: a model reading a part of the exchange (keys of gateway.memory.encoders' MODELS, PARTS).
    model: str
    reads: str
    distance: Literal["cosine"] | None = "cosine"  # None for sparse (dot product of weights)
    modifier: Literal["idf"] | None = None  # sparse: the store scales each term by its rarity
    fusion_weight: float = 1.0  # this vector's ranking in a fused query (weighted RRF; see above)
    # The queries whose target "all" fuses this vector (see above).
    fused_by: tuple[QueryKind, ...] = ()
    # The queries of a chat's retrieval that probe this vector, and the least score a hit needs there.
    recalled_by: tuple[QueryKind, ...] = ()
    recall_min_score: float | None = None


@dataclass(frozen=True)
class Schema:
    """The table: its vectors in order (the order of a query's probes), looked up by name."""

    vectors: tuple[VectorSpec, ...]
    _by_name: dict[str, VectorSpec] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_name = {spec.name: spec for spec in self.vectors}
        if len(by_name) != len(self.vectors) or ALL in by_name:
            raise ValueError(f"vector names must be distinct and not {ALL!r}: {[s.name for s in self.vectors]}")
        for spec in self.vectors:
            if (spec.kind == "sparse") != (spec.size is None) or (spec.kind == "sparse") != (spec.distance is None):
                raise ValueError(f"vector {spec.name!r}: a sparse vector has no size and no distance, others both")
            if spec.recalled_by and spec.recall_min_score is None:
                raise ValueError(f"vector {spec.name!r}: a chat's retrieval needs its minimum score")
        object.__setattr__(self, "_by_name", by_name)

    def __iter__(self) -> Iterator[VectorSpec]:
        return iter(self.vectors)

    def __len__(self) -> int:
        return len(self.vectors)

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __getitem__(self, name: str) -> VectorSpec:
        return self._by_name[name]

    def get(self, name: str) -> VectorSpec | None:
        return self._by_name.get(name)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._by_name)

    @property
    def targets(self) -> tuple[str, ...]:
        """What a search may compare with: one vector by its name, or "all" of them fused."""
        return (*self._by_name, ALL)

    def of_kind(self, kind: Kind) -> tuple[VectorSpec, ...]:
        return tuple(spec for spec in self.vectors if spec.kind == kind)


CLIP_DIM = 512
MINILM_DIM = 384
CLIP_MIN_SCORE = 0.85

SCHEMA = Schema((
    VectorSpec("image", "dense", CLIP_DIM, "clip", "image", fused_by=("text", "image"),
               recalled_by=("image",), recall_min_score=CLIP_MIN_SCORE),
    VectorSpec("question", "dense", CLIP_DIM, "clip", "question", fused_by=("image",),
               recalled_by=("text",), recall_min_score=CLIP_MIN_SCORE),
    VectorSpec("answer", "dense", CLIP_DIM, "clip", "answer", fused_by=("image",),
               recalled_by=("text",), recall_min_score=CLIP_MIN_SCORE),
    VectorSpec("text", "multi", MINILM_DIM, "minilm", "question_passages", fused_by=("text",),
               recalled_by=("text",), recall_min_score=0.45),
    VectorSpec("terms", "sparse", None, "bm25", "question_answer", distance=None, modifier="idf",
               fusion_weight=2.0, fused_by=("text",), recalled_by=("text",), recall_min_score=6.0),
))
BY_NAME = {spec.name: spec for spec in SCHEMA}
# The vectors in CLIP's one space (image and text alike): an image query can use only these.
CLIP_NAMES: tuple[str, ...] = tuple(spec.name for spec in SCHEMA if spec.model == "clip")


@dataclass(frozen=True, slots=True)
class Sparse:
    """A sparse vector: term ids and their weights (BM25's term frequencies; the store applies IDF)."""

    indices: tuple[int, ...]
    values: tuple[float, ...]


# What a named vector holds in a point: dense, sparse, or several dense (multi).
VectorValue = list[float] | Sparse | list[list[float]]

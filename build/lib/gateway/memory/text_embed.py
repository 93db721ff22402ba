"""Text encoders beside CLIP: all-MiniLM-L6-v2 sentence vectors and BM25 sparse vectors (fastembed).

- all-MiniLM-L6-v2: trained on sequences up to 128 word pieces (fastembed truncates at 256), so a long
  answer is cut into passages of about `PASSAGE_WORDS` words on paragraph and sentence boundaries, each
  embedded on its own; the store compares a query with the best of them (MAX_SIM, see schema).
- BM25 (`Qdrant/bm25`): tokenizer, English stopwords and Snowball stemmer, no weights; the store's IDF
  modifier supplies document frequencies. Documents and queries embed differently (a query's terms
  weigh 1), hence `terms_document` / `terms_query`.
- Lazy and thread-safe like ClipEmbedder; explicit onnxruntime threads for the same reason.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gateway.memory.embed import EmbedderError
from gateway.memory.store.schema import MINILM_DIM, Sparse

SENTENCE_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
BM25_MODEL = "Qdrant/bm25"
# ~100 words is ~130 word pieces: within what the model was trained on.
PASSAGE_WORDS = 100
# A bound on the work and the multivector size one very long answer costs.
MAX_PASSAGES = 32
# What the sentence model is given of a text (see sentences).
SENTENCE_CHARS = 8192

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def passages(text: str, words: int = PASSAGE_WORDS, limit: int = MAX_PASSAGES) -> list[str]:
    """`text` cut into passages of at most about `words` words, on paragraph then sentence boundaries
    (a sentence longer than that is cut by words). Empty text gives no passage."""
    pieces: list[str] = []
    for paragraph in re.split(r"\n\s*\n", text):
        for sentence in _SENTENCE_END.split(paragraph.strip()):
            tokens = sentence.split()
            pieces += [" ".join(tokens[i:i + words]) for i in range(0, len(tokens), words)]
        pieces.append("")  # a paragraph boundary: passages do not run across it when avoidable
    out: list[str] = []
    current: list[str] = []
    size = 0
    for piece in pieces:
        n = len(piece.split())
        if current and (piece == "" and size >= words // 2 or size + n > words):
            out.append(" ".join(current))
            current, size = [], 0
        if piece:
            current.append(piece)
            size += n
    if current:
        out.append(" ".join(current))
    return out[:limit]


class TextEncoders:
    def __init__(self, sentence_model: str = SENTENCE_MODEL, bm25_model: str = BM25_MODEL, *,
                 cache_dir: Path | None = None, threads: int = 1, batch_size: int = 16,
                 sentence_path: Path | None = None) -> None:
        """`sentence_path`: a folder holding the sentence model's files to load instead of the cache's
        copy (its int8 copy, gateway.memory.quantized)."""
        self.sentence_model = sentence_model
        self.bm25_model = bm25_model
        self.cache_dir = cache_dir
        self.sentence_path = sentence_path
        self.threads = max(1, threads)
        self.batch_size = max(1, batch_size)
        self._dense: Any = None
        self._sparse: Any = None
        self._lock = threading.Lock()

    def _kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {}
        if self.cache_dir is not None:
            kwargs["cache_dir"] = str(self.cache_dir)
        if os.environ.get("HF_HUB_OFFLINE") == "1":
            kwargs["local_files_only"] = True
        return kwargs

    def _load(self, which: str) -> Any:
        with self._lock:
            if which == "dense" and self._dense is None:
                from fastembed import TextEmbedding

                path = {"specific_model_path": str(self.sentence_path)} if self.sentence_path else {}
                self._dense = self._make(lambda: TextEmbedding(self.sentence_model, threads=self.threads,
                                                               **self._kwargs(), **path), self.sentence_model)
            if which == "sparse" and self._sparse is None:
                from fastembed import SparseTextEmbedding

                self._sparse = self._make(lambda: SparseTextEmbedding(self.bm25_model, **self._kwargs()),
                                          self.bm25_model)
        return self._dense if which == "dense" else self._sparse

    def _make(self, build: Any, model: str) -> Any:
        try:
            return build()
        except Exception as exc:  # fastembed raises ValueError/OSError/RuntimeError by cause
            where = self.cache_dir or os.environ.get("FASTEMBED_CACHE_PATH") or "fastembed's default cache"
            raise EmbedderError(
                f"cannot load text model {model!r} from {where}: {exc}. Online, fastembed downloads it on "
                "first use; offline, build it (`make memory-test-deps`) and set "
                "VISIONRAG_TEXT_MODEL_CACHE_DIR to its folder."
            ) from exc

    def load(self) -> None:
        self._load("dense")
        self._load("sparse")

    @property
    def loaded(self) -> bool:
        return self._dense is not None and self._sparse is not None

    def sentence_dir(self) -> Path:
        """The folder the sentence model is loaded from (loading it if needed)."""
        return Path(self._load("dense").model._model_dir)

    def sentences(self, texts: Sequence[str]) -> np.ndarray:
        """L2-normalized sentence vectors, one row per text."""
        if not texts:
            return np.zeros((0, MINILM_DIM), dtype=np.float32)
        model = self._load("dense")
        # The model reads 256 word pieces, but its tokenizer splits the whole text first: only a head that
        # holds them is given (the same vector unless its word pieces average over 30 characters).
        texts = [text[:SENTENCE_CHARS] for text in texts]
        # Sorted by length: a batch is padded to its longest text.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        vectors = np.asarray(list(model.embed([texts[i] for i in order], batch_size=self.batch_size)),
                             dtype=np.float32)
        out = np.empty_like(vectors)
        out[order] = vectors
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)

    def terms_document(self, texts: Sequence[str]) -> list[Sparse]:
        if not texts:
            return []
        return [_sparse(e) for e in self._load("sparse").embed(list(texts), batch_size=self.batch_size)]

    def terms_query(self, text: str) -> Sparse:
        return _sparse(next(iter(self._load("sparse").query_embed(text))))


def _sparse(embedding: Any) -> Sparse:
    return Sparse(tuple(int(i) for i in embedding.indices), tuple(float(v) for v in embedding.values))

"""CLIP embeddings through fastembed: text and images into one 512-d space.

- Lazy: the models (~0.9 GB RSS at full size, 1-2.5 s to load) load on first use or `load()`, so a
  gateway with memory disabled, or a CLI `--help`, never pays for them.
- Explicit onnxruntime threads: its default spin-waits and, with another busy process on the box, was
  slower than `threads=1` while burning up to 1.9x the CPU (shared/notes/fastembed-offline.md).
- Never `parallel=`: fastembed starts a fresh process pool on every call.
- Vectors come back L2-normalized (fastembed leaves CLIP text vectors unnormalized), so scores are
  cosine similarities whichever store holds them.
- Thread-safe: onnxruntime sessions may run concurrently, so the ingest worker and /search share one
  loaded pair instead of holding two copies.
- Images are decoded small (gateway.images.decode): shrunk to the model's input size as they are
  decoded, under one decode budget shared by /search and the ingest worker, so a small file with a
  huge raster costs its raster once, briefly, instead of for the whole batch.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from gateway.images import ImageDecoder, ImageError, default_decoder
from gateway.memory.store.schema import CLIP_DIM

# CLIP ViT-B/32's input side; used until the vision model is loaded and says its own.
DEFAULT_INPUT_EDGE = 224
# What CLIP's text model is given of a text (see embed_texts).
CLIP_TEXT_CHARS = 4096
# The longest text any model here embeds, stored or asked: a question or answer beyond it is embedded by
# its head (a chat's retrieval and /search alike, so the two embed a long question the same way). Every
# model's work grows with the text it is given, since tokenizing comes before truncating; the sentence
# model's passages (MAX_PASSAGES of about 100 words) stop near this length anyway.
TEXT_MAX_CHARS = 20_000


class EmbedderError(RuntimeError):
    """The CLIP models cannot be loaded or run (missing from the cache, corrupt files)."""


class ImageDecodeError(ValueError):
    """These bytes are not an image Pillow can decode."""


class ClipEmbedder:
    def __init__(
        self,
        text_model: str = "Qdrant/clip-ViT-B-32-text",
        vision_model: str = "Qdrant/clip-ViT-B-32-vision",
        *,
        cache_dir: Path | None = None,
        threads: int = 1,
        batch_size: int = 16,
        decoder: ImageDecoder | None = None,
        text_path: Path | None = None,
        vision_path: Path | None = None,
    ) -> None:
        """`text_path` / `vision_path`: a folder holding that model's files (model.onnx and its tokenizer
        or preprocessor config) to load instead of the cache's copy; the model names still say which
        kind of model it is (gateway.memory.quantized loads its int8 copies this way)."""
        self.text_model = text_model
        self.vision_model = vision_model
        self.cache_dir = cache_dir
        self.text_path = text_path
        self.vision_path = vision_path
        self.threads = max(1, threads)
        self.batch_size = max(1, batch_size)
        self._text: Any = None
        self._vision: Any = None
        self._lock = threading.Lock()
        self.decoder = decoder or default_decoder()
        self.input_edge = DEFAULT_INPUT_EDGE

    def _kwargs(self, path: Path | None = None) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"threads": self.threads}
        if path is not None:
            kwargs["specific_model_path"] = str(path)
        if self.cache_dir is not None:
            kwargs["cache_dir"] = str(self.cache_dir)
        # With HF_HUB_OFFLINE=1 (tests, air-gapped installs) only the cache is consulted, and a miss
        # fails at once instead of retrying the hub.
        if os.environ.get("HF_HUB_OFFLINE") == "1":
            kwargs["local_files_only"] = True
        return kwargs

    def _load_error(self, model: str, exc: Exception) -> EmbedderError:
        where = self.cache_dir or os.environ.get("FASTEMBED_CACHE_PATH") or "fastembed's default cache"
        return EmbedderError(
            f"cannot load CLIP model {model!r} from {where}: {exc}. Online, fastembed downloads it on first "
            "use; offline, build one (`make memory-test-deps` for the tiny test model) and set "
            "VISIONRAG_FASTEMBED_CACHE_DIR to its folder."
        )

    def _text_model(self) -> Any:
        if self._text is None:
            with self._lock:
                if self._text is None:
                    from fastembed import TextEmbedding

                    try:
                        self._text = TextEmbedding(self.text_model, **self._kwargs(self.text_path))
                    except Exception as exc:  # fastembed raises ValueError/OSError/RuntimeError by cause
                        raise self._load_error(self.text_model, exc) from exc
        return self._text

    def _vision_model(self) -> Any:
        if self._vision is None:
            with self._lock:
                if self._vision is None:
                    from fastembed import ImageEmbedding

                    try:
                        vision = ImageEmbedding(self.vision_model, **self._kwargs(self.vision_path))
                    except Exception as exc:
                        raise self._load_error(self.vision_model, exc) from exc
                    self.input_edge = _input_edge(vision)
                    self._vision = vision
        return self._vision

    def load(self) -> None:
        """Load both models now (at start-up) instead of on the first exchange or query."""
        self._text_model()
        self._vision_model()

    @property
    def loaded(self) -> bool:
        return self._text is not None and self._vision is not None

    def model_dirs(self) -> tuple[Path, Path]:
        """The folders the text and vision models are loaded from (loading them if needed): where
        fastembed put its download, or the paths given."""
        return Path(self._text_model().model._model_dir), Path(self._vision_model().model._model_dir)

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, CLIP_DIM), dtype=np.float32)
        # CLIP reads 77 tokens, but its tokenizer splits the whole text first: only a head that holds
        # them is given (the same vector unless its tokens average over 50 characters).
        texts = [text[:CLIP_TEXT_CHARS] for text in texts]
        vectors = np.asarray(list(self._text_model().embed(texts, batch_size=self.batch_size)))
        return _normalize(vectors)

    def embed_images(self, images: Sequence[bytes | Image.Image]) -> np.ndarray:
        """Embed encoded images (PNG, JPEG, ...) or decoded ones (`decode_image`).

        Raises ImageDecodeError naming the first undecodable one.
        """
        if not images:
            return np.zeros((0, CLIP_DIM), dtype=np.float32)
        model = self._vision_model()
        decoded = [
            data if isinstance(data, Image.Image) else self.decode_image(data, index)
            for index, data in enumerate(images)
        ]
        vectors = np.asarray(list(model.embed(decoded, batch_size=self.batch_size)))
        return _normalize(vectors)

    def decode_image(self, data: bytes, index: int = 0) -> Image.Image:
        """Decode now (not lazily inside fastembed), so a bad image is attributable to its index, and
        small: RGB (what CLIP takes) with its shorter side at the model's input size."""
        try:
            return self.decoder.rgb(data, self.input_edge)
        except ImageError as exc:
            raise ImageDecodeError(f"image {index} cannot be decoded: {exc.message}") from exc


def _input_edge(vision: Any) -> int:
    """The side the model's own preprocessing resizes to (fastembed's Resize step), else CLIP's 224."""
    for step in getattr(getattr(getattr(vision, "model", None), "processor", None), "transforms", []):
        if type(step).__name__ == "Resize" and isinstance(getattr(step, "size", None), int):
            return int(step.size)
    return DEFAULT_INPUT_EDGE


def _normalize(vectors: np.ndarray) -> np.ndarray:
    vectors = vectors.astype(np.float32, copy=False)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)

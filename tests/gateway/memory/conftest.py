"""Memory test fixtures: the tiny random-weight CLIP (real fastembed loading), real stores, a journal.

Both store adapters run the same tests: `store` is parametrized over the embedded engine
(qdrant-edge) and qdrant-client's local mode (standing in for a Qdrant server, which cannot run here).
"""

from __future__ import annotations

import asyncio
import io
import os
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gateway.journal import BlobStore, Exchange, ImageRef, Journal
from gateway.journal.disk import DiskBlobStore
from gateway.journal.sqlite import SQLiteJournal
from gateway.memory.embed import ClipEmbedder
from gateway.memory.service import Memory
from gateway.memory.store.base import VectorStore
from gateway.memory.store.edge import EdgeStore
from gateway.memory.store.remote import RemoteStore
from gateway.memory.text_embed import TextEncoders
from gateway.settings import Settings

ROOT = Path(__file__).resolve().parents[3]
TINY_CLIP = ROOT / "models" / "clip-tiny"
TEXT_MODELS = ROOT / "models" / "text"

# No model hub here: a cache miss must fail at once instead of retrying the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _made(marker: Path, what: str) -> Path:
    """The model folder whose `marker` make writes last, built now if it is missing."""
    if not marker.exists():
        result = subprocess.run(["make", "-C", str(ROOT), str(marker.relative_to(ROOT))],
                                capture_output=True, text=True, check=False)
        if result.returncode != 0:
            pytest.fail(f"building {what} failed; run `make memory-test-deps`:\n{result.stderr[-2000:]}")
    return marker.parent


@pytest.fixture(scope="session")
def clip_cache() -> Path:
    """The tiny CLIP pair in fastembed's cache layout, with the text models linked in (one cache for
    a gateway's every encoder), built by `make memory-test-deps` if missing."""
    return _made(TINY_CLIP / ".text-linked", "the tiny CLIP")


@pytest.fixture(scope="session")
def embedder(clip_cache: Path) -> ClipEmbedder:
    clip = ClipEmbedder(cache_dir=clip_cache, threads=1, batch_size=8)
    clip.load()
    return clip


@pytest.fixture(scope="session")
def text_cache() -> Path:
    """The genuine all-MiniLM-L6-v2 (ONNX) and Qdrant/bm25 in fastembed's cache layout (`make memory-test-deps`)."""
    return _made(TEXT_MODELS / ".built", "the text models")


@pytest.fixture(scope="session")
def text_encoders(text_cache: Path) -> TextEncoders:
    encoders = TextEncoders(cache_dir=text_cache, threads=1, batch_size=8)
    encoders.load()
    return encoders


@pytest.fixture(params=["edge", "qdrant-client"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[VectorStore]:
    if request.param == "edge":
        adapter: VectorStore = EdgeStore(tmp_path / "shard")
    else:
        adapter = RemoteStore("test_exchanges", location=":memory:")
    adapter.ensure_schema()
    yield adapter
    adapter.close()


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    j = SQLiteJournal(tmp_path / "journal.sqlite3")
    yield j
    j.close()


@pytest.fixture
def blobs(tmp_path: Path) -> BlobStore:
    return DiskBlobStore(tmp_path / "images")


@pytest.fixture
def memory(tmp_path: Path, clip_cache: Path) -> Iterator[Memory]:
    """Memory built as the gateway builds it (an empty VectorReuse once read as "none" there, and the
    worker kept nothing), its models loaded, its worker not started: tests drain it themselves."""
    settings = Settings(_env_file=None, data_dir=tmp_path, fastembed_cache_dir=clip_cache)
    journal = SQLiteJournal(tmp_path / "journal.sqlite3")
    memory = Memory.from_settings(settings, journal, DiskBlobStore(tmp_path / "images"))
    memory.store.ensure_schema()
    memory.embedder.load()
    memory.text.load()
    yield memory
    asyncio.run(memory.image_loader.fetcher.close())
    memory.store.close()
    journal.close()


def noise_png(seed: int, size: tuple[int, int] = (96, 80)) -> bytes:
    """A distinct image per seed (random pixels), so its CLIP vector differs from every other seed's."""
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "PNG")
    return buf.getvalue()


ExchangeFactory = Callable[..., Exchange]


@pytest.fixture
def make_exchange(blobs: BlobStore) -> ExchangeFactory:
    """Build an Exchange whose images (given as PNG bytes) are already in the BlobStore."""

    def make(
        question: str = "what is in this picture?",
        answer: str = "a picture",
        images: list[bytes] | None = None,
        *,
        tenant: str = "default",
        model: str = "tiny-vlm",
        user: str | None = None,
        status: str = "complete",
        created_at: float | None = None,
        endpoint: str = "chat.completions",
        source_url: str | None = None,
    ) -> Exchange:
        refs = [ImageRef(blobs.put(data), "image/png", source_url) for data in images or []]
        return Exchange(
            id=uuid.uuid4().hex,
            created_at=created_at if created_at is not None else time.time(),
            endpoint=endpoint,
            model=model,
            tenant=tenant,
            user=user,
            messages=[{"role": "user", "text": question}] if question else [],
            images=refs,
            answer=answer,
            finish_reason="stop",
            usage={"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
            latency_ms=12.5,
            status=status,  # type: ignore[arg-type]
        )

    return make

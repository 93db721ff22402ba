"""The CLIP wrapper, with the tiny random-weight CLIP loaded through fastembed's normal cache path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gateway.memory.embed import ClipEmbedder, EmbedderError, ImageDecodeError, decode_image
from tests.memory.conftest import noise_png


def test_text_vectors_are_512d_normalized_and_deterministic(embedder: ClipEmbedder) -> None:
    vectors = embedder.embed_texts(["a red square", "a blue circle", "a red square"])
    assert vectors.shape == (3, 512) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(vectors[0], vectors[2], atol=1e-6)
    assert float(vectors[0] @ vectors[1]) < 0.9999


def test_batching_and_padding_do_not_change_text_vectors(embedder: ClipEmbedder) -> None:
    texts = ["short", "a much longer sentence that needs padding for the short one in the same batch"]
    batched = embedder.embed_texts(texts)
    single = np.stack([embedder.embed_texts([t])[0] for t in texts])
    np.testing.assert_allclose(batched, single, atol=1e-5)


def test_image_vectors_from_bytes_and_decoded_images_agree(embedder: ClipEmbedder) -> None:
    a, b = noise_png(1), noise_png(2)
    from_bytes = embedder.embed_images([a, b])
    from_decoded = embedder.embed_images([decode_image(a), decode_image(b)])
    assert from_bytes.shape == (2, 512)
    np.testing.assert_allclose(np.linalg.norm(from_bytes, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(from_bytes, from_decoded, atol=1e-5)
    assert float(from_bytes[0] @ from_bytes[1]) < 0.9999


def test_undecodable_image_is_named_by_index(embedder: ClipEmbedder) -> None:
    with pytest.raises(ImageDecodeError, match="image 1"):
        embedder.embed_images([noise_png(1), b"not an image"])


def test_empty_inputs_cost_nothing(embedder: ClipEmbedder) -> None:
    assert embedder.embed_texts([]).shape == (0, 512)
    assert embedder.embed_images([]).shape == (0, 512)


def test_missing_model_says_how_to_get_one(tmp_path: Path) -> None:
    clip = ClipEmbedder(cache_dir=tmp_path / "empty-cache")
    assert not clip.loaded
    with pytest.raises(EmbedderError, match="VISIONRAG_FASTEMBED_CACHE_DIR"):
        clip.embed_texts(["hello"])

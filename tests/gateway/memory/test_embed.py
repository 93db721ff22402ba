"""The CLIP wrapper, with the tiny random-weight CLIP loaded through fastembed's normal cache path."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gateway.images import DecodeBudget, ImageDecoder, ImagePolicy
from gateway.memory.embed import ClipEmbedder, EmbedderError, ImageDecodeError
from gateway.settings import Settings
from tests.gateway.images.deep_png import deep_png
from tests.gateway.memory.conftest import noise_png


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
    from_decoded = embedder.embed_images([embedder.decode_image(a), embedder.decode_image(b)])
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


class Spy:
    """The real vision model, recording what it is handed."""

    def __init__(self, model: object) -> None:
        self.model = model
        self.sizes: list[tuple[str, tuple[int, int]]] = []

    def embed(self, images, **kwargs):
        self.sizes += [(image.mode, image.size) for image in images]
        return self.model.embed(images, **kwargs)


def test_the_model_is_handed_small_rgb_images(embedder: ClipEmbedder, monkeypatch: pytest.MonkeyPatch) -> None:
    assert embedder.input_edge == 224  # read from the model's own preprocessing
    spy = Spy(embedder._vision_model())
    monkeypatch.setattr(embedder, "_vision", spy)
    vectors = embedder.embed_images([deep_png(4242, 4242, 16, 6), deep_png(6000, 3000, 8, 6), noise_png(1)])
    assert vectors.shape == (3, 512)
    assert spy.sizes == [("RGB", (224, 224)), ("RGB", (448, 224)), ("RGB", (96, 80))]


def test_shrinking_first_gives_the_vectors_of_the_full_raster(embedder: ClipEmbedder) -> None:
    # The model's preprocessing resizes to the same size with the same filter: shrinking before it
    # hands it the same pixels, so memory is saved without changing what is stored.
    rng = np.random.default_rng(7)
    big = Image.fromarray(rng.integers(0, 255, (900, 1200, 3), dtype=np.uint8))
    buf = io.BytesIO()
    big.save(buf, "PNG")
    shrunk = embedder.embed_images([buf.getvalue()])
    full = np.asarray(list(embedder._vision_model().embed([big], batch_size=1)))
    full /= np.linalg.norm(full, axis=1, keepdims=True)
    np.testing.assert_allclose(shrunk, full, atol=1e-5)


def test_images_over_the_decoded_bytes_limit_are_named_by_index(clip_cache: Path) -> None:
    policy = ImagePolicy.from_settings(Settings(_env_file=None))
    clip = ClipEmbedder(cache_dir=clip_cache, decoder=ImageDecoder(policy, DecodeBudget(10**9)))
    with pytest.raises(ImageDecodeError, match="image 1 cannot be decoded: image decodes to 288000000 bytes"):
        clip.embed_images([noise_png(1), deep_png(6000, 6000, 16, 6)])

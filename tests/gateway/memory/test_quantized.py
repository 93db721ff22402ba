"""int8 encoders: built from the fp32 ONNX (the tiny CLIP, the genuine all-MiniLM-L6-v2) by
onnxruntime's real quantizer, loaded through fastembed, checked against fp32 on the probes; a damaged
int8 model is refused."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from gateway.journal.disk import DiskBlobStore
from gateway.journal.sqlite import SQLiteJournal
from gateway.memory import quantize
from gateway.memory.embed import ClipEmbedder
from gateway.memory.quantized import (
    THRESHOLDS,
    Int8Refused,
    int8_clip,
    int8_sentences,
    measure_clip,
    measure_sentences,
    probe_images,
)
from gateway.memory.service import Memory
from gateway.memory.text_embed import TextEncoders
from gateway.settings import Settings
from tests.gateway.memory.conftest import ROOT, noise_png


@pytest.fixture
def cache(clip_cache: Path, tmp_path: Path) -> Path:
    """A private copy of the tiny CLIP pair, without any int8 folders `make memory-models` left there, so
    they are built, damaged and rebuilt here."""
    out = tmp_path / "fastembed"
    for entry in clip_cache.glob("models--Qdrant--clip-*"):
        shutil.copytree(entry, out / entry.name, ignore=shutil.ignore_patterns(quantize.INT8_DIR))
    return out


@pytest.fixture
def fp32(cache: Path) -> ClipEmbedder:
    return ClipEmbedder(cache_dir=cache, threads=1, batch_size=8)


@pytest.fixture
def text_copy(text_cache: Path, tmp_path: Path) -> Path:
    """A private copy of the sentence model and BM25 (real weights), for the same reason."""
    out = tmp_path / "text"
    for entry in text_cache.glob("models--*"):
        shutil.copytree(entry, out / entry.name, ignore=shutil.ignore_patterns(quantize.INT8_DIR))
    return out


def scramble(model_dir: Path) -> None:
    """Shuffle every int8 weight matrix in place: a corrupt or mismatched build that still loads and runs."""
    path = quantize.int8_dir(model_dir) / "model.onnx"
    model = onnx.load(str(path))
    rng = np.random.default_rng(0)
    for init in model.graph.initializer:
        if init.data_type == onnx.TensorProto.INT8 and init.name.endswith("_quantized"):
            weights = numpy_helper.to_array(init).copy()
            rng.shuffle(weights.reshape(-1))
            init.CopyFrom(numpy_helper.from_array(weights, init.name))
    onnx.save(model, str(path))


def test_int8_build_agrees_with_fp32_and_is_used(fp32: ClipEmbedder) -> None:
    clip = int8_clip(fp32)
    text_dir, vision_dir = fp32.model_dirs()
    assert clip.loaded
    assert clip.model_dirs() == (quantize.int8_dir(text_dir), quantize.int8_dir(vision_dir))
    agreement = measure_clip(fp32, clip)
    assert not agreement.failures(THRESHOLDS), agreement.describe()
    assert agreement.top1 == {"text->image": 1.0, "image->image": 1.0}
    # Not the fp32 files under another name: the weights are int8, and the vectors differ a little.
    weights = onnx.load(str(clip.model_dirs()[1] / "model.onnx")).graph.initializer
    assert any(w.data_type == onnx.TensorProto.INT8 for w in weights)
    images = [noise_png(1), noise_png(2)]
    ref, new = fp32.embed_images(images), clip.embed_images(images)
    assert 0.99 < float((ref * new).sum(1).min()) < 1.0 - 1e-7
    assert clip.embed_texts(["a red circle"]).shape == (1, 512)


def test_the_build_is_kept_until_the_fp32_model_changes(fp32: ClipEmbedder) -> None:
    int8_clip(fp32)
    text_dir, _ = fp32.model_dirs()
    built = quantize.int8_dir(text_dir) / "model.onnx"
    first = built.stat().st_mtime_ns
    int8_clip(fp32)
    assert built.stat().st_mtime_ns == first
    os.utime(text_dir / "model.onnx", ns=(first + 10**9, first + 10**9))  # a new fp32 download
    assert not quantize.is_built(text_dir)
    int8_clip(fp32)
    assert quantize.is_built(text_dir) and built.stat().st_mtime_ns != first


def test_a_scrambled_int8_model_is_refused_with_the_numbers(fp32: ClipEmbedder) -> None:
    int8_clip(fp32)
    for folder in fp32.model_dirs():
        scramble(folder)
    with pytest.raises(Int8Refused) as refused:
        int8_clip(fp32)
    message = str(refused.value)
    assert re.search(rf"mean cosine -?0\.\d{{4}} < {THRESHOLDS.min_mean_cosine}", message), message
    assert "VISIONRAG_CLIP_INT8=false" in message


def test_probes_are_drawn_the_same_every_time() -> None:
    first, second = probe_images(), probe_images()
    assert len(first) == 8
    assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(first, second, strict=True))
    # Eight different pictures: no two share their pixels.
    assert len({np.asarray(image).tobytes() for image in first}) == 8


def test_the_genuine_sentence_model_in_int8_agrees_with_fp32(text_copy: Path) -> None:
    fp32 = TextEncoders(cache_dir=text_copy, threads=1)
    text = int8_sentences(fp32)
    assert text.sentence_dir() == quantize.int8_dir(fp32.sentence_dir())
    agreement = measure_sentences(fp32, text)
    assert not agreement.failures(THRESHOLDS), agreement.describe()
    assert agreement.top1 == {"text->text": 1.0}
    # sentence-transformers' documented similarities (0.755, -0.105, 0.247) survive, within what int8 moves
    # them: activations are scaled per run, so a text's vector shifts a little with its batch-mates.
    rows = text.sentences(["A man is eating food.", "A man is eating a piece of bread.", "The girl is carrying a baby.",
                           "A man is riding a horse."])
    assert [float(rows[0] @ rows[i]) for i in (1, 2, 3)] == pytest.approx([0.755, -0.105, 0.247], abs=0.03)
    assert text.terms_document(["red vase"])[0].indices  # BM25 as it was


def test_a_scrambled_sentence_model_is_refused(text_copy: Path) -> None:
    fp32 = TextEncoders(cache_dir=text_copy, threads=1)
    int8_sentences(fp32)
    scramble(fp32.sentence_dir())
    with pytest.raises(Int8Refused, match=r"int8 sentence model refused .*mean cosine"):
        int8_sentences(fp32)


def test_settings_select_int8_after_the_check(cache: Path, text_copy: Path, tmp_path: Path) -> None:
    settings = Settings(_env_file=None, data_dir=tmp_path, fastembed_cache_dir=cache, text_model_cache_dir=text_copy,
                        clip_int8=True)
    journal = SQLiteJournal(tmp_path / "journal.sqlite3")
    try:
        memory = Memory.from_settings(settings, journal, DiskBlobStore(tmp_path / "images"))
        assert memory.embedder.loaded and memory.embedder.model_dirs()[0].name == quantize.INT8_DIR
        assert memory.text is not None and memory.text.sentence_dir().name == quantize.INT8_DIR
        for folder in ClipEmbedder(cache_dir=cache).model_dirs():
            scramble(folder)
        with pytest.raises(Int8Refused):
            Memory.from_settings(settings, journal, DiskBlobStore(tmp_path / "images"))
    finally:
        journal.close()


def test_make_builds_the_int8_copies_with_the_module(cache: Path) -> None:
    """What `make memory-models` runs, as a command."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
           "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-m", "gateway.memory.quantize", "clip", "--cache-dir", str(cache)],
                            capture_output=True, text=True, env=env, check=False, timeout=120)
    assert result.returncode == 0, result.stderr
    for folder in ClipEmbedder(cache_dir=cache).model_dirs():
        assert quantize.is_built(folder)
        assert str(quantize.int8_dir(folder)) in result.stdout

"""int8 encoders, used only once they agree with fp32 (VISIONRAG_CLIP_INT8=true).

    clip = int8_clip(ClipEmbedder(...))        # CLIP's int8 pair, loaded and checked
    text = int8_sentences(TextEncoders(...))   # the sentence model's int8 copy, loaded and checked

Both raise Int8Refused. The int8 copies are built beside the fp32 models (gateway.memory.quantize) if
missing: by `make memory-models` for the local models, else on the first start, from the fp32 files
fastembed downloaded. Then the fp32 and int8 models embed a fixed probe set drawn here (PROBE_TEXTS,
probe_images), and the int8 model is refused, so the process does not start, unless on every probe
its vectors stay close to fp32's (cosine) and searches among the probes find the same top hit (top-1
agreement: for CLIP each text's nearest image and each image's nearest other image; for the sentence
model each text's nearest other text). The fp32 models are dropped after the check. BM25 has no
weights and stays as it is.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from gateway.memory.embed import ClipEmbedder, EmbedderError
from gateway.memory.quantize import ensure_int8
from gateway.memory.text_embed import TextEncoders

log = logging.getLogger("visionrag.memory.quantized")

PROBE_TEXTS = (
    "a red circle on a white background",
    "a blue square",
    "a green triangle on black",
    "yellow and black horizontal stripes",
    "a black and white checkerboard",
    "a landscape with a blue sky over green grass",
    "a close-up of colourful noise",
    "a white cross on a purple background",
    "What is shown in this picture, and what colour is the object in the middle of it?",
    ("The picture shows a small wooden table next to a window; on it stands a red vase holding dried "
     "flowers, and the light from the window casts a long shadow towards the wall behind it."),
)
# The sentence model's: the same, and pairs close in meaning (sentence-transformers' own examples).
SENTENCE_PROBES = (
    *PROBE_TEXTS,
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The girl is carrying a baby.",
    "A man is riding a horse.",
)


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Below any of these an int8 model is refused. They sit under what good int8 builds of trained
    transformers keep (per-channel weights) and far above what a corrupt or mismatched file gives. One
    miss in each top-1 count is allowed: a probe whose two best candidates score almost alike may swap
    them without anything being wrong."""

    min_mean_cosine: float = 0.98
    min_cosine: float = 0.95
    min_top1: float = 0.85


THRESHOLDS = Thresholds()


@dataclass(frozen=True, slots=True)
class Agreement:
    """An int8 model against fp32 on the probes: the cosine of each probe's two vectors, and for each
    kind of search among the probes the share whose top hit is the same."""

    model: str
    mean_cosine: float
    min_cosine: float
    top1: dict[str, float] = field(default_factory=dict)

    def failures(self, thresholds: Thresholds = THRESHOLDS) -> list[str]:
        checks = [("mean cosine", self.mean_cosine, thresholds.min_mean_cosine),
                  ("min cosine", self.min_cosine, thresholds.min_cosine)]
        checks += [(f"{search} top-1 agreement", share, thresholds.min_top1) for search, share in self.top1.items()]
        return [f"{name} {value:.4f} < {floor}" for name, value, floor in checks if value < floor]

    def describe(self) -> str:
        top1 = "".join(f", {search} top-1 {share:.2f}" for search, share in self.top1.items())
        return f"mean cosine {self.mean_cosine:.4f}, min cosine {self.min_cosine:.4f}{top1}"


class Int8Refused(EmbedderError):
    """An int8 model disagrees with fp32 on the probes beyond the thresholds."""


def probe_images(edge: int = 224) -> list[Image.Image]:
    """Eight pictures as unlike each other as simple drawing allows (shapes, colours, textures), the
    same on every run."""
    def canvas(colour: str) -> tuple[Image.Image, ImageDraw.ImageDraw]:
        image = Image.new("RGB", (edge, edge), colour)
        return image, ImageDraw.Draw(image)

    e = edge
    images = []
    image, draw = canvas("white")
    draw.ellipse((e // 5, e // 5, 4 * e // 5, 4 * e // 5), fill="red")
    images.append(image)
    image, draw = canvas("white")
    draw.rectangle((e // 4, e // 4, 3 * e // 4, 3 * e // 4), fill="blue")
    images.append(image)
    image, draw = canvas("black")
    draw.polygon([(e // 2, e // 8), (e // 8, 7 * e // 8), (7 * e // 8, 7 * e // 8)], fill="green")
    images.append(image)
    image, draw = canvas("yellow")
    for y in range(0, e, e // 8):
        draw.rectangle((0, y, e, y + e // 16), fill="black")
    images.append(image)
    image, draw = canvas("white")
    cell = e // 8
    for row in range(8):
        for col in range(row % 2, 8, 2):
            draw.rectangle((col * cell, row * cell, (col + 1) * cell - 1, (row + 1) * cell - 1), fill="black")
    images.append(image)
    y = np.linspace(0, 1, e)[:, None, None]
    sky = (1 - y) * np.array([70, 130, 230]) + y * np.array([235, 245, 255])
    land = np.broadcast_to(np.array([50, 160, 60]), (e, 1, 3))
    pixels = np.where(y < 0.6, sky, land) * np.ones((1, e, 1))
    images.append(Image.fromarray(pixels.astype(np.uint8)))
    noise = np.random.default_rng(17).integers(0, 256, (e // 8, e // 8, 3), dtype=np.uint8)
    images.append(Image.fromarray(noise).resize((e, e), Image.Resampling.NEAREST))
    image, draw = canvas("purple")
    draw.rectangle((2 * e // 5, e // 8, 3 * e // 5, 7 * e // 8), fill="white")
    draw.rectangle((e // 8, 2 * e // 5, 7 * e // 8, 3 * e // 5), fill="white")
    images.append(image)
    return images


def measure_clip(fp32: ClipEmbedder, int8: ClipEmbedder) -> Agreement:
    images = probe_images()
    texts = list(PROBE_TEXTS)
    ref_images, new_images = fp32.embed_images(images), int8.embed_images(images)
    ref_texts, new_texts = fp32.embed_texts(texts), int8.embed_texts(texts)
    return Agreement(
        "CLIP",
        *_cosines(np.concatenate([ref_images, ref_texts]), np.concatenate([new_images, new_texts])),
        top1={"text->image": _top1(ref_texts @ ref_images.T, new_texts @ new_images.T),
              "image->image": _top1(_others(ref_images), _others(new_images))},
    )


def measure_sentences(fp32: TextEncoders, int8: TextEncoders) -> Agreement:
    ref, new = fp32.sentences(SENTENCE_PROBES), int8.sentences(SENTENCE_PROBES)
    return Agreement("sentence model", *_cosines(ref, new), top1={"text->text": _top1(_others(ref), _others(new))})


def _cosines(reference: np.ndarray, candidate: np.ndarray) -> tuple[float, float]:
    cosines = (reference * candidate).sum(1)  # both L2-normalized
    return float(cosines.mean()), float(cosines.min())


def _others(vectors: np.ndarray) -> np.ndarray:
    scores = vectors @ vectors.T
    np.fill_diagonal(scores, -np.inf)  # a probe's nearest other probe
    return scores


def _top1(reference: np.ndarray, candidate: np.ndarray) -> float:
    return float((reference.argmax(1) == candidate.argmax(1)).mean())


def _build(folders: tuple[Path, ...]) -> tuple[Path, ...]:
    try:
        return tuple(ensure_int8(folder) for folder in folders)
    except Exception as exc:  # onnx and onnxruntime raise their own types by cause
        where = " and ".join(str(folder) for folder in folders)
        raise EmbedderError(f"cannot build the int8 copy of the model in {where}: {exc}") from exc


def _require(agreement: Agreement, folders: tuple[Path, ...], thresholds: Thresholds) -> None:
    failures = agreement.failures(thresholds)
    if failures:
        raise Int8Refused(
            f"int8 {agreement.model} refused (VISIONRAG_CLIP_INT8=true): it disagrees with fp32 on the probe "
            f"set: {'; '.join(failures)} ({agreement.describe()}; int8 model in "
            f"{' and '.join(str(folder) for folder in folders)}). Delete that folder to rebuild it, or set "
            "VISIONRAG_CLIP_INT8=false."
        )
    log.info("memory: int8 %s agrees with fp32 on the probes (%s)", agreement.model, agreement.describe())


def int8_clip(fp32: ClipEmbedder, thresholds: Thresholds = THRESHOLDS) -> ClipEmbedder:
    """The int8 version of `fp32` (same models, cache, threads, batch size and decoder), its files built
    if missing, loaded and checked against `fp32` on the probes. Raises Int8Refused."""
    text_path, vision_path = _build(fp32.model_dirs())
    int8 = ClipEmbedder(
        fp32.text_model, fp32.vision_model, cache_dir=fp32.cache_dir, threads=fp32.threads,
        batch_size=fp32.batch_size, decoder=fp32.decoder, text_path=text_path, vision_path=vision_path,
    )
    int8.load()
    _require(measure_clip(fp32, int8), (text_path, vision_path), thresholds)
    return int8


def int8_sentences(fp32: TextEncoders, thresholds: Thresholds = THRESHOLDS) -> TextEncoders:
    """`fp32` with its sentence model's int8 copy (BM25 as it is), built if missing, loaded and checked
    against fp32 on the probes. Raises Int8Refused."""
    (path,) = _build((fp32.sentence_dir(),))
    int8 = TextEncoders(fp32.sentence_model, fp32.bm25_model, cache_dir=fp32.cache_dir, threads=fp32.threads,
                        batch_size=fp32.batch_size, sentence_path=path)
    int8.load()
    _require(measure_sentences(fp32, int8), (path,), thresholds)
    return int8


"""int8 CLIP, used only once it agrees with fp32 (VISIONRAG_CLIP_INT8=true).

    clip = int8_clip(ClipEmbedder(...))   # the int8 pair, loaded and checked; raises Int8Refused

The int8 copies are built beside the fp32 models (gateway.memory.quantize) if missing: by
`make memory-models` for the local test models, else on the first start, from the fp32 files fastembed
downloaded. Then both pairs embed a fixed probe set, drawn here (PROBE_TEXTS, probe_images), and the
int8 pair is refused, so the process does not start, unless on every probe its vectors stay close to
fp32's (cosine) and the same probe comes out on top when searching (top-1 agreement: each text's
nearest image, each image's nearest other image). The fp32 pair is dropped after the check.
A broken or mismatched int8 file fails this by far; a good build passes by far (see THRESHOLDS).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image, ImageDraw

from gateway.memory.embed import ClipEmbedder, EmbedderError
from gateway.memory.quantize import ensure_int8

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


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Below any of these the int8 pair is refused. Good int8 builds of trained transformers keep a
    cosine near 0.99 with fp32 (per-channel weights); a corrupt or mismatched file falls far below. One
    miss in each top-1 count is allowed: a probe whose two best candidates score almost alike may swap
    them without anything being wrong."""

    min_mean_cosine: float = 0.98
    min_cosine: float = 0.95
    min_top1: float = 0.85


THRESHOLDS = Thresholds()


@dataclass(frozen=True, slots=True)
class Agreement:
    """int8 against fp32 on the probes: cosine of each probe's two vectors (images and texts together),
    and the share of searches whose top hit is the same (text -> image, image -> other image)."""

    mean_cosine: float
    min_cosine: float
    text_to_image_top1: float
    image_to_image_top1: float

    def failures(self, thresholds: Thresholds = THRESHOLDS) -> list[str]:
        checks = [
            ("mean cosine", self.mean_cosine, thresholds.min_mean_cosine),
            ("min cosine", self.min_cosine, thresholds.min_cosine),
            ("text->image top-1 agreement", self.text_to_image_top1, thresholds.min_top1),
            ("image->image top-1 agreement", self.image_to_image_top1, thresholds.min_top1),
        ]
        return [f"{name} {value:.4f} < {floor}" for name, value, floor in checks if value < floor]

    def describe(self) -> str:
        return ", ".join(f"{name.replace('_', ' ')} {value:.4f}" for name, value in asdict(self).items())


class Int8Refused(EmbedderError):
    """The int8 CLIP disagrees with fp32 on the probes beyond the thresholds."""


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


def measure(fp32: ClipEmbedder, int8: ClipEmbedder) -> Agreement:
    images = probe_images()
    texts = list(PROBE_TEXTS)
    ref_images, new_images = fp32.embed_images(images), int8.embed_images(images)
    ref_texts, new_texts = fp32.embed_texts(texts), int8.embed_texts(texts)
    cosines = np.concatenate([(ref_images * new_images).sum(1), (ref_texts * new_texts).sum(1)])
    return Agreement(
        mean_cosine=float(cosines.mean()),
        min_cosine=float(cosines.min()),
        text_to_image_top1=_top1(ref_texts @ ref_images.T, new_texts @ new_images.T),
        image_to_image_top1=_top1(_others(ref_images), _others(new_images)),
    )


def _others(vectors: np.ndarray) -> np.ndarray:
    scores = vectors @ vectors.T
    np.fill_diagonal(scores, -np.inf)  # an image's nearest other image
    return scores


def _top1(reference: np.ndarray, candidate: np.ndarray) -> float:
    return float((reference.argmax(1) == candidate.argmax(1)).mean())


def int8_clip(fp32: ClipEmbedder, thresholds: Thresholds = THRESHOLDS) -> ClipEmbedder:
    """The int8 version of `fp32` (same models, cache, threads, batch size and decoder), its files built
    if missing, loaded and checked against `fp32` on the probes. Raises Int8Refused."""
    text_dir, vision_dir = fp32.model_dirs()
    try:
        text_path, vision_path = ensure_int8(text_dir), ensure_int8(vision_dir)
    except Exception as exc:  # onnx and onnxruntime raise their own types by cause
        raise EmbedderError(f"cannot build the int8 CLIP beside {text_dir} and {vision_dir}: {exc}") from exc
    int8 = ClipEmbedder(
        fp32.text_model, fp32.vision_model, cache_dir=fp32.cache_dir, threads=fp32.threads,
        batch_size=fp32.batch_size, decoder=fp32.decoder, text_path=text_path, vision_path=vision_path,
    )
    int8.load()
    agreement = measure(fp32, int8)
    failures = agreement.failures(thresholds)
    if failures:
        raise Int8Refused(
            f"int8 CLIP refused (VISIONRAG_CLIP_INT8=true): it disagrees with fp32 on the probe set: "
            f"{'; '.join(failures)} ({agreement.describe()}; models in {text_path} and {vision_path}). "
            "Delete those folders to rebuild them, or set VISIONRAG_CLIP_INT8=false."
        )
    log.info("memory: int8 CLIP agrees with fp32 on the probes (%s)", agreement.describe())
    return int8

"""Ingest throughput: journal -> full-size CLIP (random weights) -> embedded Qdrant, in exchanges/s.

    make bench-memory-ingest      # or: .venv/bin/python -m bench.memory_ingest

Each exchange has one 256x256 image, a question (~12 words) and an answer (~45 words). For each
onnxruntime thread count, two things are measured in the same run:
- baseline: fastembed alone embedding the same images and texts (no journal, no store);
- pipeline: the real IngestWorker draining a journal into an EdgeStore (decode, embed, upsert, mark).
CPU per exchange is this process's CPU time over the pipeline run; `cores x 1000 / CPU ms` is the
throughput ceiling this box could reach if ingest had every core to itself.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import resource
import tempfile
import time
import uuid
from importlib.metadata import version
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
FULL_CLIP = ROOT / "models" / "clip-full"
QUESTION = "What is shown in this picture, and what colour is the object in the middle of it?"
ANSWER = ("The picture shows a small wooden table standing on a tiled floor next to a window. In the "
          "middle of it there is a red ceramic vase holding a bunch of dried flowers, and the light from "
          "the window falls on its left side, casting a long shadow towards the wall behind it.")


def photo_png(seed: int, side: int = 256) -> bytes:
    """A photo-like PNG: smooth gradients with mild noise (a pure-noise PNG would be unrealistically big)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:side, 0:side]
    phase = rng.uniform(0, 6.28, 3)
    base = np.stack([127 + 120 * np.sin(x / (20 + 9 * i) + y / (31 + 7 * i) + phase[i]) for i in range(3)], -1)
    pixels = np.clip(base + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "PNG")
    return buf.getvalue()


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def queue(data_dir: Path, images: list[bytes]) -> None:
    from gateway.journal import Exchange, ImageRef
    from gateway.journal.disk import DiskBlobStore
    from gateway.journal.sqlite import SQLiteJournal

    journal = SQLiteJournal(data_dir / "journal.sqlite3")
    blobs = DiskBlobStore(data_dir / "images")
    for n, data in enumerate(images):
        journal.append(Exchange(
            id=uuid.uuid4().hex, created_at=time.time(), endpoint="chat.completions", model="bench",
            tenant="default", user=None, messages=[{"role": "user", "text": f"{QUESTION} ({n})"}],
            images=[ImageRef(blobs.put(data), "image/png")], answer=f"{ANSWER} ({n})", finish_reason="stop",
            usage=None, latency_ms=1.0,
        ))
    journal.close()


def run(threads: int, images: list[bytes], batch: int) -> dict:
    from gateway.journal.disk import DiskBlobStore
    from gateway.journal.sqlite import SQLiteJournal
    from gateway.memory.embed import ClipEmbedder
    from gateway.memory.ingest import IngestWorker
    from gateway.memory.store.edge import EdgeStore

    embedder = ClipEmbedder(cache_dir=FULL_CLIP, threads=threads, batch_size=batch)
    embedder.load()
    embedder.embed_images(images[:2])  # warm-up: first runs allocate
    embedder.embed_texts([QUESTION, ANSWER])
    n = len(images)

    # Baseline: fastembed alone, the same work in the same batch sizes.
    cpu0, t0 = cpu_s(), time.perf_counter()
    for start in range(0, n, batch):
        chunk = images[start:start + batch]
        embedder.embed_images(chunk)
        embedder.embed_texts([f"{QUESTION} ({i})" for i in range(start, start + len(chunk))]
                             + [f"{ANSWER} ({i})" for i in range(start, start + len(chunk))])
    base_s, base_cpu = time.perf_counter() - t0, cpu_s() - cpu0

    with tempfile.TemporaryDirectory(prefix="visionrag-bench-ingest-") as tmp:
        data_dir = Path(tmp)
        queue(data_dir, images)
        journal = SQLiteJournal(data_dir / "journal.sqlite3")
        store = EdgeStore(data_dir / "shard")
        store.ensure_schema()
        worker = IngestWorker(journal, DiskBlobStore(data_dir / "images"), embedder, store, batch_size=batch)
        cpu0, t0 = cpu_s(), time.perf_counter()
        done = worker.drain()
        pipe_s, pipe_cpu = time.perf_counter() - t0, cpu_s() - cpu0
        assert done == n and store.count() == n and journal.backlog() == 0
        store.close()
        journal.close()
    return {
        "threads": threads,
        "exchanges": n,
        "baseline_per_s": n / base_s,
        "baseline_cpu_ms": base_cpu / n * 1000,
        "pipeline_per_s": n / pipe_s,
        "pipeline_cpu_ms": pipe_cpu / n * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--exchanges", type=int, default=96)
    parser.add_argument("--batch", type=int, default=16, help="ingest batch size (VISIONRAG_EMBED_BATCH_SIZE)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "memory_ingest.json")
    args = parser.parse_args()
    if not (FULL_CLIP / ".built").exists():
        raise SystemExit(f"{FULL_CLIP} is missing: run `make {FULL_CLIP.relative_to(ROOT)}/.built`")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    images = [photo_png(seed) for seed in range(args.exchanges)]
    rows = [run(threads, images, args.batch) for threads in args.threads]
    cores = os.cpu_count() or 1
    versions = {p: version(p) for p in ("fastembed", "onnxruntime", "qdrant-edge-py", "pillow", "numpy")}
    report = {"python": platform.python_version(), "cores": cores, "versions": versions,
              "image_png_bytes": int(np.mean([len(i) for i in images])), "batch": args.batch, "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))

    print(f"{args.exchanges} exchanges (256x256 PNG ~{report['image_png_bytes'] // 1000} KB, question, answer), "
          f"full-size random-weight CLIP ViT-B/32, batch {args.batch}, {cores} cores; "
          + ", ".join(f"{k} {v}" for k, v in versions.items()))
    print("| ORT threads | pipeline exch/s | fastembed-only exch/s | ratio | pipeline CPU ms/exch "
          "| fastembed-only CPU ms/exch | CPU-bound ceiling exch/s |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['threads']} | {r['pipeline_per_s']:.2f} | {r['baseline_per_s']:.2f} | "
              f"{r['pipeline_per_s'] / r['baseline_per_s']:.2f}x | {r['pipeline_cpu_ms']:.0f} | "
              f"{r['baseline_cpu_ms']:.0f} | {cores * 1000 / r['pipeline_cpu_ms']:.1f} |")


if __name__ == "__main__":
    main()

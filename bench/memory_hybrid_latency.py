"""Latency of the hybrid schema: the fused store query at N exchanges, and a whole text search in-process.

    make bench-memory-hybrid-latency     # or: .venv/bin/python -m bench.memory_hybrid_latency [N]

The embedded store (Qdrant Edge, this version's schema) is filled with N synthetic exchanges shaped
like real ones: three 512-d CLIP vectors, a multivector of 4 x 384-d sentence passages, a BM25 sparse
vector of ~60 terms (Zipf-distributed term ids, as word frequencies are), no text payload. 90% of the
points belong to tenant `main`, the rest to 100 small tenants. Unindexed (brute force, what a store
serves until its first `optimize()`), or with `--index` after `optimize()` (HNSW, in a child process
as the gateway builds it).

- store: p50/p99 of the fused query of a text search (`target=all`: CLIP text->image, sentence
  passages MAX_SIM, BM25; prefetches + RRF in the store), tenant `main` and a small tenant;
- each signal's probe alone (tenant `main`);
- search: p50/p99 of `Searcher.search` (query embedding with CLIP, the genuine MiniLM and BM25, then
  the store query), the whole /search minus HTTP and JSON; `--clip full` uses the full-size
  random-weight CLIP ViT-B/32 (the real FLOPs, `make models/clip-full/.built`), else the tiny one.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np

from bench.memory_search import NoJournal
from gateway.memory.embed import ClipEmbedder
from gateway.memory.points import point_id
from gateway.memory.search import Searcher, text_probes
from gateway.memory.store.base import SearchFilter
from gateway.memory.store.edge import EdgeStore
from gateway.memory.store.points import StorePoint, rfc3339
from gateway.memory.store.schema import Sparse
from gateway.memory.text_embed import TextEncoders

ROOT = Path(__file__).resolve().parent.parent


def unit(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    v = rng.standard_normal(shape).astype(np.float32)
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def points(start: int, count: int, rng: np.random.Generator) -> list[StorePoint]:
    clip = unit(rng, (count, 3, 512))
    passages = unit(rng, (count, 4, 384))
    out = []
    for k in range(count):
        n = start + k
        terms = np.unique(rng.zipf(1.3, 60) % 2_000_000)
        out.append(StorePoint(point_id(f"ex{n}", 0), {
            "image": clip[k, 0].tolist(), "question": clip[k, 1].tolist(), "answer": clip[k, 2].tolist(),
            "text": passages[k].tolist(),
            "terms": Sparse(tuple(int(t) for t in terms), tuple(1.0 for _ in terms)),
        }, {"exchange_id": f"ex{n}", "tenant": "main" if n % 10 else f"t{(n // 10) % 100}", "ts": 1.75e9 + n,
            "time": rfc3339(1.75e9 + n)}))
    return out


def percentiles(samples: list[float]) -> tuple[float, float]:
    return float(np.percentile(samples, 50)), float(np.percentile(samples, 99))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("size", type=int, nargs="?", default=100_000, help="stored exchanges")
    parser.add_argument("--index", action="store_true", help="also measure after optimize() (HNSW; minutes at 100k)")
    parser.add_argument("--clip", choices=("tiny", "full"), default="tiny", help="the CLIP that embeds the query")
    args = parser.parse_args()
    size, index, clip_size = args.size, args.index, args.clip
    rng = np.random.default_rng(1)
    clip = ClipEmbedder(cache_dir=ROOT / "models" / f"clip-{clip_size}", threads=1)
    text = TextEncoders(cache_dir=ROOT / "models" / "text", threads=1)
    clip.load()
    text.load()
    queries = [f"where does the {w} job write its nightly export for tenant {i}?"
               for i, w in enumerate(["billing", "orders", "refund", "audit", "invoice"] * 40)]
    results: dict[str, object] = {"exchanges": size, "clip": clip_size}
    with tempfile.TemporaryDirectory() as tmp:
        store = EdgeStore(Path(tmp) / "shard")
        store.ensure_schema()
        started = time.perf_counter()
        for start in range(0, size, 256):
            store.upsert(points(start, min(256, size - start), rng))
        results["upsert_per_s"] = size / (time.perf_counter() - started)
        searcher = Searcher(clip, store, NoJournal(), text)
        probes = [text_probes(clip, text, q, "all") for q in queries]
        if index:
            started = time.perf_counter()
            store.optimize()
            results["optimize_s"] = time.perf_counter() - started
        for tenant in ("main", "t7"):
            flt = SearchFilter(tenant)
            for p in probes[:10]:
                searcher.query(p, flt, limit=10)  # warm-up
            samples = []
            for p in probes:
                t = time.perf_counter()
                searcher.query(p, flt, limit=10)
                samples.append((time.perf_counter() - t) * 1000)
            results[f"store_fused_ms_{tenant}"] = percentiles(samples)
        for name in ("image", "text", "terms"):  # each signal alone, tenant main: what the fusion costs
            samples = []
            for p in probes:
                single = [probe for probe in p if probe.using == name]
                t = time.perf_counter()
                searcher.query(single, SearchFilter("main"), limit=10)
                samples.append((time.perf_counter() - t) * 1000)
            results[f"store_{name}_ms_main"] = percentiles(samples)
        samples = []
        for q in queries:
            t = time.perf_counter()
            searcher.search(SearchFilter("main"), text=q, target="all", limit=10)
            samples.append((time.perf_counter() - t) * 1000)
        results["search_ms_main"] = percentiles(samples)
        store.close()
    print(json.dumps(results, indent=2))
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"memory_hybrid_latency_{size}_{clip_size}{'_indexed' if index else ''}.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

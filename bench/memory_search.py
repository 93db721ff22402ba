"""Search latency: the store query alone, and the whole POST /search (CLIP query embedding included).

    make bench-memory-search      # or: .venv/bin/python -m bench.memory_search     (~4 min on 2 cores)

The embedded store (qdrant-edge) is filled with synthetic exchanges: three CLIP-like 512-d unit vectors
(image, question, answer) and a ~1 KB payload each. Two tenant shapes share the shard: tenant `main`
holds 90% of the points (the keys-off case: everything in one tenant), 100 small tenants share the
other 10% (a multi-tenant gateway: each tenant ~0.1%). Every query filters by tenant, as /search does.

At each size (10k, then 100k):
- store query p50/p99 (the `Searcher.query` path: tenant filter, dedup), unindexed (brute force);
- baseline in the same run: exact numpy brute force over the same tenant's vectors, in RAM (for the
  fused `all` target: three matrix products + the same RRF), which also gives recall@10;
- after `optimize()` (HNSW, built in a child process as the gateway does), the same queries, with
  recall@10 against the exact answer (~1 min of indexing at 100k; --no-index skips it);
- whole /search over HTTP against a real uvicorn gateway process (memory routes, full-size random-weight
  CLIP, 1 onnxruntime thread): text queries, and image queries (224 px PNG data: URLs), with the
  query-embedding time alone as the baseline.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from importlib.metadata import version
from pathlib import Path

# A single-threaded numpy baseline: OpenBLAS's pool contended with the store's threads (8 ms stalls).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np

from gateway.memory.search import Searcher
from gateway.memory.store.base import RRF_K, probes_for
from gateway.memory.store.edge import EdgeStore
from gateway.memory.store.points import Hit
from gateway.memory.texts import Found, JournalTexts

ROOT = Path(__file__).resolve().parent.parent
FULL_CLIP = ROOT / "models" / "clip-full"
COLLECTION = "bench_exchanges"
SMALL_TENANTS = 100
KEYS = "main:k-main," + ",".join(f"t{i}:k-t{i}" for i in range(SMALL_TENANTS))
T0 = 1.75e9


class NoJournal(JournalTexts):
    """Synthetic points have no journal rows: their hits pass with empty texts, so `Searcher.query` is
    the store query and the dedup alone."""

    def __init__(self) -> None:
        pass

    def fill(self, hits: Sequence[Hit], tenant: str) -> list[Found]:
        return [Found.of(hit, "", "", None) for hit in hits]


def tenant_of(n: int) -> str:
    return "main" if n % 10 else f"t{(n // 10) % SMALL_TENANTS}"


# CLIP-like synthetic vectors: 200 clusters in a 48-d subspace of the 512-d space plus a little full-rank
# noise (nearest neighbours at cosine ~0.84, random pairs ~0). Uniformly random 512-d vectors are the
# pathological case for any ANN index (no structure: HNSW recall@10 ~0.5 at default ef) and unlike CLIP
# embeddings, whose intrinsic dimension is low.
_SPACE = np.random.default_rng(1234)
_BASIS = _SPACE.standard_normal((48, 512)).astype(np.float32)
_CENTERS = _SPACE.standard_normal((200, 48)).astype(np.float32)


def unit_rows(rng: np.random.Generator, rows: int) -> np.ndarray:
    z = _CENTERS[rng.integers(0, len(_CENTERS), rows)] + 0.6 * rng.standard_normal((rows, 48)).astype(np.float32)
    v = z @ _BASIS + 0.3 * rng.standard_normal((rows, 512)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def fill(store: EdgeStore, start: int, stop: int, kept: list[np.ndarray]) -> float:
    from gateway.memory.store.points import StorePoint, rfc3339

    rng = np.random.default_rng(start)
    started = time.perf_counter()
    for lo in range(start, stop, 256):
        hi = min(stop, lo + 256)
        vecs = [unit_rows(rng, hi - lo) for _ in range(3)]
        kept.append(np.stack(vecs, axis=1))  # (rows, 3, 512): image, question, answer
        points = []
        for i, n in enumerate(range(lo, hi)):
            ts = T0 + n
            points.append(StorePoint(
                str(uuid.UUID(int=n + 1)),
                {"image": vecs[0][i].tolist(), "question": vecs[1][i].tolist(), "answer": vecs[2][i].tolist()},
                {"exchange_id": f"ex{n}", "tenant": tenant_of(n), "time": rfc3339(ts), "ts": ts,
                 "model": "bench-vlm", "user": f"u{n % 50}", "endpoint": "chat.completions", "status": "complete",
                 "question": f"question {n} " + "q" * 150, "answer": f"answer {n} " + "a" * 700,
                 "image_sha256": f"{n:064x}", "image_mime": "image/png", "image_index": 0},
            ))
        store.upsert(points)
    return (stop - start) / (time.perf_counter() - started)


def pct(values: list[float]) -> tuple[float, float]:
    return float(np.percentile(values, 50)), float(np.percentile(values, 99))


def store_latency(
    searcher: Searcher, queries: np.ndarray, tenant: str, target: str
) -> tuple[list[float], list[list[int]]]:
    from gateway.memory.store.base import SearchFilter

    flt = SearchFilter(tenant)
    for q in queries[:10]:
        searcher.query(probes_for(q.tolist(), target), flt, limit=10)  # warm-up
    latencies, results = [], []
    for q in queries:
        started = time.perf_counter()
        hits = searcher.query(probes_for(q.tolist(), target), flt, limit=10)
        latencies.append((time.perf_counter() - started) * 1000)
        results.append([int(h.exchange_id[2:]) for h in hits])
    return latencies, results


def numpy_baseline(vectors: np.ndarray, tenants: np.ndarray, queries: np.ndarray, tenant: str, target: str
                   ) -> tuple[list[float], list[list[int]]]:
    """Exact search by matrix products over the tenant's vectors, already in RAM (no payload, no filter).

    `image`: top-10 by the image vector. `all`: top-40 on each of the three vectors, fused by RRF as the
    store does it (k = RRF_K, CLIP's vectors all weigh 1), top-10 of the fusion.
    """
    ids = np.nonzero(tenants == tenant)[0]
    slots = [0] if target == "image" else [0, 1, 2]
    # The tenant's partition, one contiguous matrix per vector, prepared outside the timing.
    matrices = {slot: np.ascontiguousarray(vectors[ids, slot, :]) for slot in slots}
    depth = 10 if target == "image" else 40
    latencies, results = [], []
    for q in queries:
        started = time.perf_counter()
        fused: dict[int, float] = {}
        for slot in slots:
            scores = matrices[slot] @ q
            top = np.argpartition(-scores, depth)[:depth] if len(scores) > depth else np.arange(len(scores))
            top = top[np.argsort(-scores[top])]
            for rank, index in enumerate(top.tolist()):
                fused[index] = fused.get(index, 0.0) + 1.0 / (rank + RRF_K)
        best = sorted(fused, key=fused.__getitem__, reverse=True)[:10]
        latencies.append((time.perf_counter() - started) * 1000)
        results.append(ids[best].tolist())
    return latencies, results


def recall(found: list[list[int]], exact: list[list[int]]) -> float:
    return float(np.mean([len(set(f) & set(e)) / max(1, len(e)) for f, e in zip(found, exact, strict=True)]))


# --- the whole /search, over HTTP -------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def serve(data_dir: Path, port: int) -> None:
    """A gateway-like app (the real memory routes and auth) on uvicorn, owning the shard."""
    import uvicorn
    from fastapi import FastAPI

    from gateway.api.deps import wire
    from gateway.api.errors import install_error_handlers
    from gateway.api.memory import router as memory_router
    from gateway.runtime import Runtime
    from gateway.settings import Settings

    settings = Settings(_env_file=None, data_dir=data_dir, api_keys=KEYS, qdrant_collection=COLLECTION,
                        fastembed_cache_dir=FULL_CLIP, embed_threads=1)
    runtime = Runtime.from_settings(settings)
    memory = runtime.memory
    assert memory is not None

    app = FastAPI()
    install_error_handlers(app)
    wire(app, settings=settings, auth=runtime.auth, memory=memory)
    app.include_router(memory_router)
    # Memory alone: the upstream pool's health probes would run beside the measured searches.
    memory.start()
    memory.embedder.load()
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", loop="uvloop", http="httptools")


def http_search(data_dir: Path, texts: list[str], images: list[str]) -> dict:
    import httpx

    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "bench.memory_search", "--serve", str(data_dir),
                               "--port", str(port)], cwd=ROOT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        with httpx.Client(timeout=30) as client:
            while True:
                try:
                    if client.post(url + "/search", json={"text": "warm"},
                                   headers={"Authorization": "Bearer k-main"}).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.time() > deadline or server.poll() is not None:
                    raise RuntimeError("bench search server did not come up")
                time.sleep(0.2)
            out: dict = {}
            for tenant in ("main", "t7"):
                headers = {"Authorization": f"Bearer k-{tenant}"}
                for kind, queries in (("text", texts), ("image", images)):
                    whole, embed, store = [], [], []
                    for i, query in enumerate(queries):
                        body = {"text": query} if kind == "text" else {"image": query}
                        body |= {"target": "all", "limit": 10}
                        started = time.perf_counter()
                        response = client.post(url + "/search", json=body, headers=headers)
                        elapsed = (time.perf_counter() - started) * 1000
                        assert response.status_code == 200, response.text
                        if i >= 3:  # warm-up
                            whole.append(elapsed)
                            embed.append(response.json()["timings_ms"]["embed"])
                            store.append(response.json()["timings_ms"]["store"])
                    out[f"{tenant}/{kind}"] = {"whole": pct(whole), "embed": pct(embed), "store": pct(store),
                                               "n": len(whole)}
            return out
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(30)


def query_images(count: int) -> list[str]:
    from bench.memory_ingest import photo_png

    return ["data:image/png;base64," + base64.b64encode(photo_png(10_000 + i, side=224)).decode()
            for i in range(count)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--queries", type=int, default=300, help="store queries per scenario")
    parser.add_argument("--text-searches", type=int, default=100)
    parser.add_argument("--image-searches", type=int, default=25)
    parser.add_argument("--no-index", action="store_true", help="brute force only (skip the HNSW builds)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "memory_search.json")
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.serve:
        serve(args.serve, args.port)
        return
    if not (FULL_CLIP / ".built").exists():
        raise SystemExit(f"{FULL_CLIP} is missing: run `make {FULL_CLIP.relative_to(ROOT)}/.built`")

    rng = np.random.default_rng(42)
    queries = unit_rows(rng, args.queries)
    texts = [f"a photo of item number {i} on a wooden table near the window" for i in range(args.text_searches)]
    images = query_images(args.image_searches)
    rows: list[dict] = []
    kept: list[np.ndarray] = []
    for size in sorted(args.sizes):
        # A fresh shard per size: an index built at a smaller size would make the next "brute force" mixed.
        with tempfile.TemporaryDirectory(prefix="visionrag-bench-search-") as tmp:
            data_dir = Path(tmp)
            store = EdgeStore(data_dir / "qdrant" / COLLECTION)
            store.ensure_schema()
            kept.clear()
            rate = fill(store, 0, size, kept)
            vectors = np.concatenate(kept)
            tenants = np.array([tenant_of(n) for n in range(size)])
            searcher = Searcher(None, store, NoJournal())  # type: ignore[arg-type]  # store queries only: no embedder
            row: dict = {"size": size, "upserts_per_s": rate, "scenarios": {}}
            phases = ["brute force"]
            if not args.no_index:
                phases.append("hnsw")
            for phase in phases:
                if phase == "hnsw":
                    started = time.perf_counter()
                    store.optimize()
                    row["optimize_s"] = time.perf_counter() - started
                    row["indexed_vectors"] = store.stats().indexed_vectors
                for tenant in ("main", "t7"):
                    for target in ("image", "all"):
                        base_lat, exact = numpy_baseline(vectors, tenants, queries, tenant, target)
                        lat, found = store_latency(searcher, queries, tenant, target)
                        row["scenarios"][f"{phase}/{tenant}/{target}"] = {
                            "store": pct(lat), "numpy": pct(base_lat),
                            # Fused RRF scores tie a lot (rank r in one list = rank r in another) and
                            # ties break differently: recall is meaningful for one vector only.
                            "recall@10": recall(found, exact) if target == "image" else None,
                            "tenant_points": int((tenants == tenant).sum()),
                        }
            store.close()
            row["http"] = http_search(data_dir, texts, images)
            rows.append(row)

    versions = {p: version(p) for p in ("qdrant-edge-py", "fastembed", "onnxruntime", "fastapi", "uvicorn", "numpy")}
    report = {"python": platform.python_version(), "cores": os.cpu_count(), "versions": versions, "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))

    print("qdrant-edge, 3 named 512-d vectors + ~1 KB payload per exchange; tenant `main` = 90% of points, "
          "`t7` = one of 100 small tenants; " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    print("\nStore query alone (tenant filter, limit 10), ms:")
    print("| points | index | tenant (points) | target | store p50 / p99 | numpy exact p50 / p99 | ratio p50 "
          "| recall@10 vs exact |")
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        for key, s in row["scenarios"].items():
            phase, tenant, target = key.split("/")
            rec = f"{s['recall@10']:.3f}" if s["recall@10"] is not None else "-"
            print(f"| {row['size']:,} | {phase} | {tenant} ({s['tenant_points']:,}) | {target} | "
                  f"{s['store'][0]:.2f} / {s['store'][1]:.2f} | {s['numpy'][0]:.2f} / {s['numpy'][1]:.2f} | "
                  f"{s['store'][0] / s['numpy'][0]:.2f}x | {rec} |")
    print("\nWhole POST /search over HTTP (target all = 3 prefetches + RRF, limit 10, full-size CLIP, "
          "1 ORT thread; the index state is the last phase above), ms:")
    print("| points | tenant | query | whole p50 / p99 | embed alone p50 / p99 | store p50 / p99 | "
          "whole / embed p50 |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        for key, h in row["http"].items():
            tenant, kind = key.split("/")
            print(f"| {row['size']:,} | {tenant} | {kind} | {h['whole'][0]:.1f} / {h['whole'][1]:.1f} | "
                  f"{h['embed'][0]:.1f} / {h['embed'][1]:.1f} | {h['store'][0]:.1f} / {h['store'][1]:.1f} | "
                  f"{h['whole'][0] / h['embed'][0]:.2f}x |")
    for row in rows:
        if "optimize_s" in row:
            print(f"optimize() at {row['size']:,} points: {row['optimize_s']:.1f} s "
                  f"({row['indexed_vectors']:,} vectors indexed); upserts {row['upserts_per_s']:.0f} points/s")


if __name__ == "__main__":
    main()

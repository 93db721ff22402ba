"""What purging forgotten exchanges from the embedded store costs, and whether it blocks queries.

    make bench-memory-purge      # or: .venv/bin/python -m bench.memory_purge     (~6 min on 2 cores)

Qdrant only marks deleted points; `EdgeStore.purge_deleted()` rewrites the segments holding them and
rotates the WAL past their upserts (gateway/memory/store/edge.py), in a child process while the store
answers "unavailable". At each size (10k, 100k exchanges) the shard is filled with points shaped like
the gateway's (three 512-d CLIP vectors, a 3-passage 384-d multivector, a ~40-term BM25 vector, the
payload), optionally indexed (HNSW, built by `optimize()` as the gateway's maintenance does), then
`--deletes` exchanges spread over the whole shard are deleted and purged. Meanwhile:
- a query thread runs fused tenant-filtered queries (the /search `all` path) back to back: how many
  were refused during the purge, and the query latency before and after it (a rewritten indexed segment
  is searched by brute force until the next index build);
- a pure-Python heartbeat thread ticks every millisecond: its longest gap is how long the process was
  frozen (the engine's optimize() holds the GIL; the purge runs it in a child, so this should stay small).

Baseline in the same run: closing and reopening the shard (the part of the outage any maintenance
costs), and the same queries with nothing purging.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import tempfile
import threading
import time
import uuid
from importlib.metadata import version
from pathlib import Path
from typing import Self

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np

from bench.memory_search import pct, tenant_of, unit_rows
from gateway.memory.store.base import Probe, SearchFilter, StoreUnavailable
from gateway.memory.store.edge import EdgeStore
from gateway.memory.store.points import StorePoint, rfc3339
from gateway.memory.store.schema import Sparse

ROOT = Path(__file__).resolve().parent.parent
T0 = 1.75e9
PASSAGES = 3
TERMS = 40


def fill(store: EdgeStore, size: int) -> float:
    """`size` exchange-shaped points; returns points/s."""
    rng = np.random.default_rng(size)
    started = time.perf_counter()
    for lo in range(0, size, 256):
        hi = min(size, lo + 256)
        clip = [unit_rows(rng, hi - lo) for _ in range(3)]
        text = unit_rows(rng, (hi - lo) * PASSAGES)[:, :384]
        text /= np.linalg.norm(text, axis=1, keepdims=True)
        points = []
        for i, n in enumerate(range(lo, hi)):
            ids = np.unique(rng.integers(0, 2**31, TERMS))
            terms = Sparse(tuple(int(x) for x in ids), tuple(float(x) for x in rng.uniform(0.5, 2.0, len(ids))))
            ts = T0 + n
            points.append(StorePoint(
                str(uuid.UUID(int=n + 1)),
                {"image": clip[0][i].tolist(), "question": clip[1][i].tolist(), "answer": clip[2][i].tolist(),
                 "text": text[i * PASSAGES:(i + 1) * PASSAGES].tolist(), "terms": terms},
                {"exchange_id": f"ex{n}", "tenant": tenant_of(n), "time": rfc3339(ts), "ts": ts, "model": "bench-vlm",
                 "user": f"u{n % 50}", "endpoint": "chat.completions", "status": "complete", "image_count": 1,
                 "image_index": 0, "image_sha256": f"{n:064x}", "image_mime": "image/png"},
            ))
        store.upsert(points)
    return size / (time.perf_counter() - started)


class Load:
    """Fused tenant-filtered queries back to back, and a heartbeat, on threads of this process."""

    def __init__(self, store: EdgeStore, queries: np.ndarray) -> None:
        self.store = store
        self.queries = queries
        self.latencies: list[tuple[float, float]] = []  # (start, ms) of answered queries
        self.refused: list[float] = []  # start of refused ones
        self.ticks: list[float] = []
        self._done = threading.Event()
        self._threads = [threading.Thread(target=self._query), threading.Thread(target=self._beat)]

    def __enter__(self) -> Self:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._done.set()
        for thread in self._threads:
            thread.join()

    def _query(self) -> None:
        n = 0
        while not self._done.is_set():
            q = self.queries[n % len(self.queries)].tolist()
            probes = [Probe(q, name) for name in ("image", "question", "answer")]
            flt = SearchFilter("main" if n % 2 else "t7")
            started = time.perf_counter()
            try:
                self.store.query(probes, flt, 10)
                self.latencies.append((started, (time.perf_counter() - started) * 1000))
            except StoreUnavailable:
                self.refused.append(started)
                time.sleep(0.01)
            n += 1

    def _beat(self) -> None:
        while not self._done.is_set():
            self.ticks.append(time.perf_counter())
            time.sleep(0.001)

    def longest_gap(self, start: float, end: float) -> tuple[float, float]:
        """The longest time without a tick between `start` and `end` (ms), and when it began (s after start)."""
        inside = [t for t in self.ticks if start <= t <= end]
        gap, at = max(((b - a, a) for a, b in itertools.pairwise(inside)), default=(0.0, start))
        return gap * 1000, at - start

    def latency(self, start: float, end: float) -> tuple[float, float] | None:
        values = [ms for t, ms in self.latencies if start <= t <= end]
        return pct(values) if len(values) >= 5 else None


def run(size: int, index: bool, deletes: int, settle_s: float, tmp: Path) -> dict:
    store = EdgeStore(tmp / "shard")
    store.ensure_schema()
    row: dict = {"size": size, "index": index, "deletes": deletes, "upserts_per_s": fill(store, size)}
    if index:
        started = time.perf_counter()
        store.optimize()
        row["optimize_s"] = time.perf_counter() - started
    row["segments_before"] = _segments(tmp / "shard")

    rng = np.random.default_rng(7)
    gone = sorted(int(n) for n in rng.choice(size, deletes, replace=False))
    by_tenant: dict[str, list[str]] = {}
    for n in gone:
        by_tenant.setdefault(tenant_of(n), []).append(f"ex{n}")
    queries = unit_rows(np.random.default_rng(99), 200)
    with Load(store, queries) as load:
        time.sleep(settle_s)
        before = (time.perf_counter() - settle_s, time.perf_counter())
        # Baseline: closing and reopening the shard (the next query reopens it), which any maintenance does.
        started = time.perf_counter()
        store.close()
        store.count()
        row["reopen_s"] = time.perf_counter() - started
        row["reopen_gap_ms"] = load.longest_gap(started, time.perf_counter())[0]
        time.sleep(settle_s)
        for tenant, ids in by_tenant.items():
            store.delete_exchanges(tenant, ids)
        purge_start = time.perf_counter()
        assert store.purge_deleted() is True
        purge_end = time.perf_counter()
        time.sleep(settle_s)
        after = (purge_end, time.perf_counter())
    row.update({
        "purge_s": purge_end - purge_start,
        "refused": len([t for t in load.refused if purge_start <= t <= purge_end]),
        "answered_during": len([1 for t, _ in load.latencies if purge_start <= t <= purge_end]),
        "longest_gap_ms": load.longest_gap(purge_start, purge_end)[0],
        "longest_gap_at_s": load.longest_gap(purge_start, purge_end)[1],
        "gap_baseline_ms": load.longest_gap(*before)[0],
        "query_before": load.latency(*before),
        "query_after": load.latency(*after),
        "segments_after": _segments(tmp / "shard"),
        "points_after": store.count(),
        "pending_after": store.purge_pending_since(),
        "wal_bytes": sum(f.stat().st_size for f in (tmp / "shard" / "wal").iterdir()),
    })
    store.close()
    assert row["points_after"] == size - deletes and row["pending_after"] is None
    return row


def _segments(shard: Path) -> list[str]:
    """Each segment's index kind (hnsw or plain) and id prefix: which ones a purge rewrote."""
    out = []
    for config in sorted(shard.glob("segments/*/segment.json")):
        kind = json.loads(config.read_text())["config"]["vector_data"]["image"]["index"]["type"]
        out.append(f"{config.parent.name[:8]}:{kind}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--index-sizes", type=int, nargs="*", default=[10_000],
                        help="sizes also measured after an HNSW build (~1 min at 10k, 10+ min at 100k here)")
    parser.add_argument("--deletes", type=int, default=10, help="exchanges forgotten before the purge")
    parser.add_argument("--settle-s", type=float, default=3.0, help="query time before and after the purge")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "memory_purge.json")
    args = parser.parse_args()

    rows = []
    for size in sorted(args.sizes):
        for index in (False, True) if size in args.index_sizes else (False,):
            with tempfile.TemporaryDirectory(prefix="visionrag-bench-purge-") as tmp:
                rows.append(run(size, index, args.deletes, args.settle_s, Path(tmp)))
                print(json.dumps(rows[-1]), flush=True)

    versions = {p: version(p) for p in ("qdrant-edge-py", "numpy")}
    report = {"python": platform.python_version(), "cores": os.cpu_count(), "versions": versions, "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))

    def ms(value: tuple[float, float] | None) -> str:
        return f"{value[0]:.1f} / {value[1]:.1f}" if value else "-"

    print(f"\nqdrant-edge-py {versions['qdrant-edge-py']}, {os.cpu_count()} cores; {args.deletes} exchanges "
          "forgotten at random over the shard, then purge_deleted(); fused tenant-filtered queries and a "
          "1 ms heartbeat running meanwhile:")
    print("| points | index | purge (store unavailable) | baseline: close + reopen | queries refused / answered "
          "during the purge | longest freeze of this process: purge / reopen / idle | query p50 / p99 ms before "
          "-> after | segments rewritten |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        rewritten = len(set(r["segments_before"]) - set(r["segments_after"]))
        print(f"| {r['size']:,} | {'hnsw' if r['index'] else 'none'} | {r['purge_s']:.1f} s | {r['reopen_s']:.1f} s | "
              f"{r['refused']} / {r['answered_during']} | {r['longest_gap_ms']:.0f} / {r['reopen_gap_ms']:.0f} / "
              f"{r['gap_baseline_ms']:.0f} ms | {ms(r['query_before'])} -> {ms(r['query_after'])} | "
              f"{rewritten} of {len(r['segments_before'])} |")


if __name__ == "__main__":
    main()

"""Does memory stay bounded? RSS of a gateway over a soak of chats with memory on, and of the store alone.

    make bench-memory-soak        # or: .venv/bin/python -m bench.memory_soak [--chats 20000]

Soak: the real gateway process (uvicorn, memory on with the embedded store, the tiny random-weight CLIP
from models/clip-tiny, default settings otherwise) in front of the fake upstream (bench/fake_upstream.py).
Every chat carries its own small noise PNG and its own question, so every stored point is distinct. The
gateway's RSS is sampled once a second; "start" is after a warm-up (models loaded, the warm-up's chats
stored), "drained" after the last chat was stored. Then the gateway is restarted on the same data and its
RSS compared with the first start's, on an empty store.

Store only, in the same run: a process that holds an Edge shard of N exchange-like points (three 512-d
vectors, ~1 KB payload), with the layout before this change (float vectors and payload in RAM, nothing
handed back: the baseline) and with today's `EdgeStore`; RSS after writing, after a reopen (a restart)
plus searches, and, at the smaller N, after indexing (HNSW + int8) plus a reopen and searches.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from importlib.metadata import version
from pathlib import Path

import aiohttp
import numpy as np
from PIL import Image

from bench.gateway_overhead import Server, free_port, start
from bench.image_memory import stats as memory_stats
from bench.image_memory import wait_loaded

ROOT = Path(__file__).resolve().parent.parent
TINY_CLIP = ROOT / "models" / "clip-tiny"
MB = 1024 * 1024


# --- RSS -------------------------------------------------------------------------------------------
def rss(pid: int | str = "self") -> dict[str, int]:
    """VmRSS and its parts in bytes: anonymous memory, and pages of mapped files (page cache)."""
    wanted = {"VmRSS": "rss", "RssAnon": "anon", "RssFile": "file"}
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in wanted:
            out[wanted[key]] = int(value.split()[0]) * 1024
    return out


class Sampler(threading.Thread):
    """RSS of `pid` once a second, for the peak and the curve."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.samples, self.done = pid, [], threading.Event()

    def run(self) -> None:
        started = time.monotonic()
        while not self.done.wait(1.0):
            try:
                self.samples.append((round(time.monotonic() - started, 1), rss(self.pid)["rss"]))
            except OSError:
                return


# --- soak ------------------------------------------------------------------------------------------
def chat_body(n: int) -> bytes:
    """Chat n: a 32x32 noise PNG (~3 KB) and a question of its own."""
    pixels = np.random.default_rng(n).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "PNG")
    url = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
    question = f"Chat {n}: what does picture {n * 7919 % 100_003} show, and where was it taken?"
    return json.dumps({"model": "fake-vlm", "max_tokens": 16, "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": question}]}]}).encode()


async def send_chats(url: str, first: int, count: int, concurrency: int) -> int:
    failures = 0
    numbers = iter(range(first, first + count))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        async def worker() -> None:
            nonlocal failures
            for n in numbers:
                async with session.post(url, data=chat_body(n), headers={"Content-Type": "application/json"}) as r:
                    await r.read()
                    failures += r.status != 200
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return failures


def start_gateway(data_dir: Path, upstream: str, log: Path, layout: str) -> Server:
    port = free_port()
    argv = [sys.executable, "-m", "uvicorn", "gateway.api.app:create_app", "--factory", "--port", str(port),
            "--no-access-log", "--log-level", "warning", "--loop", "uvloop", "--http", "httptools"]
    if layout == "before":
        argv = [sys.executable, "-m", "bench.memory_soak", "--serve-before", str(port)]
    env = {**os.environ, "VISIONRAG_UPSTREAM_URLS": upstream + "/v1", "VISIONRAG_DATA_DIR": str(data_dir),
           "VISIONRAG_FASTEMBED_CACHE_DIR": str(TINY_CLIP), "HF_HUB_OFFLINE": "1"}
    with open(log, "ab") as out:
        process = subprocess.Popen(argv, cwd=ROOT, env=env, start_new_session=True, stdout=out,
                                   stderr=subprocess.STDOUT)
    gateway = Server("gateway", process, f"http://127.0.0.1:{port}")
    try:
        wait_loaded(gateway.url, process, 180, f"the gateway; see {log}")
    except RuntimeError:
        gateway.stop()
        raise
    return gateway


def wait_drained(url: str, timeout_s: float = 900) -> dict:
    deadline = time.time() + timeout_s
    while True:
        stats = memory_stats(url)
        if stats["backlog"] == 0:
            return stats
        if time.time() > deadline:
            raise RuntimeError(f"ingest did not drain: {stats}")
        time.sleep(1.0)


def soak(layout: str, chats: int, warmup: int, concurrency: int) -> dict:
    data_dir = Path(tempfile.mkdtemp(prefix="visionrag-bench-soak-"))
    log = data_dir.parent / f"{data_dir.name}.log"
    up_port = free_port()
    upstream = start("upstream", [sys.executable, "-m", "bench.fake_upstream", "--port", str(up_port)], up_port, core=1)
    gateway = None
    try:
        gateway = start_gateway(data_dir, upstream.url, log, layout)
        chat_url = gateway.url + "/v1/chat/completions"
        pid = gateway.process.pid
        fresh_start = rss(pid)
        failures = asyncio.run(send_chats(chat_url, 0, warmup, concurrency))
        stored_before = wait_drained(gateway.url)["worker"]["points"]
        time.sleep(2)
        at_start = rss(pid)
        sampler = Sampler(pid)
        sampler.start()
        began = time.perf_counter()
        failures += asyncio.run(send_chats(chat_url, warmup, chats, concurrency))
        chat_seconds = time.perf_counter() - began
        end_of_chats = rss(pid)
        stats = wait_drained(gateway.url)
        drain_seconds = time.perf_counter() - began
        time.sleep(2)
        drained = rss(pid)
        sampler.done.set()
        sampler.join()
        stored = stats["worker"]["points"] - stored_before
        gateway.stop()
        gateway = start_gateway(data_dir, upstream.url, log, layout)  # a restart on the stored data
        time.sleep(2)
        restarted = rss(gateway.process.pid)
        total_points = memory_stats(gateway.url)["store"]["points"]
        peak = max([at_start["rss"], end_of_chats["rss"], drained["rss"], *(s for _, s in sampler.samples)])
        log.unlink(missing_ok=True)  # kept only when something failed
        return {
            "layout": layout, "chats": chats, "warmup_chats": warmup, "concurrency": concurrency, "failed_chats": failures,
            "stored_points": stored, "points_in_store_after_restart": total_points,
            "chat_seconds": round(chat_seconds, 1), "stored_all_after_seconds": round(drain_seconds, 1),
            "rss_fresh_start": fresh_start, "rss_start": at_start, "rss_end_of_chats": end_of_chats,
            "rss_drained": drained, "rss_peak": peak, "rss_restarted": restarted,
            "growth_bytes": drained["rss"] - at_start["rss"],
            "growth_bytes_per_stored_exchange": (drained["rss"] - at_start["rss"]) / max(1, stored),
            "restart_vs_fresh_bytes": restarted["rss"] - fresh_start["rss"],
            "samples": sampler.samples,
        }
    finally:
        if gateway is not None:
            gateway.stop()
        upstream.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


# --- the baseline: the store as it was ------------------------------------------------------------
def use_layout_before() -> None:
    """Make EdgeStore what it was before RAM was bounded: Qdrant's defaults (float vectors and payload
    in RAM) and no pages handed back. For the baseline rows only, in their own processes."""
    import qdrant_edge as qe

    from gateway.memory.store import edge

    def config(task: object = None) -> qe.EdgeConfig:  # the maintenance task's settings: Qdrant's defaults too
        return qe.EdgeConfig(vectors={name: qe.EdgeVectorParams(size=512, distance=qe.Distance.Cosine)
                                      for name in ("image", "question", "answer")})

    edge.EdgeStore._config = staticmethod(config)  # type: ignore[method-assign]
    edge.EdgeStore.release_memory = lambda self: 0  # type: ignore[method-assign]


def serve_before(port: int) -> None:
    """The gateway (as `uvicorn gateway.api.app:create_app --factory`) with the store as it was."""
    import uvicorn

    use_layout_before()
    uvicorn.run("gateway.api.app:create_app", factory=True, host="127.0.0.1", port=port, access_log=False,
                log_level="warning", loop="uvloop", http="httptools")


# --- store only ------------------------------------------------------------------------------------
def store_child(layout: str, n: int, path: Path, index: bool) -> dict:
    """In a fresh process: write n points with `layout`, reopen, search; optionally index and again."""
    from gateway.memory.points import point_id
    from gateway.memory.store.base import SearchFilter, probes_for
    from gateway.memory.store.edge import EdgeStore
    from gateway.memory.store.points import StorePoint, rfc3339

    kind = EdgeStore
    if layout == "before":
        use_layout_before()
    rng = np.random.default_rng(11)
    text = "a photo of a street at night with people and cars and shop signs " * 20

    def batch(first: int) -> list[StorePoint]:
        vectors = rng.standard_normal((min(256, n - first), 3, 512)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=2, keepdims=True)
        return [
            StorePoint(point_id(f"ex{first + i}", 0), {"image": v[0].tolist(), "question": v[1].tolist(),
                                                        "answer": v[2].tolist()},
                       {"exchange_id": f"{first + i:032x}", "tenant": "default", "ts": 1.7e9 + first + i,
                        "time": rfc3339(1.7e9 + first + i), "model": "bench", "question": text[: 300 + i % 50],
                        "answer": text[: 700 + i % 100], "image_sha256": f"{first + i:064x}", "image_index": 0})
            for i, v in enumerate(vectors)
        ]

    # The baseline holds one batch of points as Python lists, as the writing loop does at any moment:
    # the growth measured is then the store's, not the generator's.
    held: list[StorePoint] | None = batch(0)
    base = rss()

    def searches(store: EdgeStore) -> None:
        for q in rng.standard_normal((100, 512)).astype(np.float32):
            store.query(probes_for(q.tolist(), "all"), SearchFilter("default"), 10)

    def grew() -> dict[str, int]:
        now = rss()
        return {k: now[k] - base[k] for k in now}

    store = kind(path)
    store.ensure_schema()
    started = time.perf_counter()
    for first in range(0, n, 256):
        if first:
            held = None
            held = batch(first)
        assert held is not None
        store.upsert(held)
    result = {"layout": layout, "points": n, "write_seconds": round(time.perf_counter() - started, 1),
              "written": grew()}
    store.close()
    store = kind(path)
    searches(store)
    result["reopened_and_searched"] = grew()
    if index:
        store.close()
        started = time.perf_counter()
        indexer = kind(path)
        indexer.optimize_here()
        indexer.close()
        result["index_seconds"] = round(time.perf_counter() - started, 1)
        store = kind(path)
        searches(store)
        result["indexed_reopened_and_searched"] = grew()
    store.close()
    result["disk_bytes"] = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return result


def store_only(n: int, index: tuple[str, ...]) -> list[dict]:
    rows = []
    for layout in ("before", "now"):
        path = Path(tempfile.mkdtemp(prefix="visionrag-bench-shard-"))
        try:
            out = subprocess.run([sys.executable, "-m", "bench.memory_soak", "--store-child", layout, str(n),
                                  str(path), "1" if layout in index else "0"], cwd=ROOT, capture_output=True, text=True,
                                 check=False)
            if out.returncode != 0:
                raise RuntimeError(f"store child {layout} {n} failed:\n{out.stderr[-3000:]}")
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        finally:
            shutil.rmtree(path, ignore_errors=True)
    return rows


# --- report ----------------------------------------------------------------------------------------
def mb(value: float) -> str:
    return f"{value / MB:+.0f}" if value < 0 else f"{value / MB:.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chats", type=int, default=20_000)
    parser.add_argument("--warmup", type=int, default=1_000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--store-points", type=int, nargs="*", default=[20_000, 100_000],
                        help="store-only sizes; the first is indexed with both layouts, the others with "
                             "today's only (indexing the old layout at 100k takes many minutes here)")
    parser.add_argument("--skip-soak", action="store_true")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "memory_soak.json")
    parser.add_argument("--store-child", nargs=4, help=argparse.SUPPRESS)
    parser.add_argument("--serve-before", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_before:
        serve_before(args.serve_before)
        return
    if args.store_child:
        layout, n, path, index = args.store_child
        print(json.dumps(store_child(layout, int(n), Path(path), index == "1")))
        return
    if not (TINY_CLIP / ".built").exists():
        raise SystemExit(f"{TINY_CLIP} is missing: run `make memory-test-deps`")

    report: dict = {"python": platform.python_version(), "cores": os.cpu_count(),
                    "versions": {p: version(p) for p in ("qdrant-edge-py", "fastembed", "onnxruntime", "uvicorn")}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    store_rows: list[dict] = []
    report["store_only"] = store_rows
    for i, n in enumerate(args.store_points):
        store_rows += store_only(n, index=("before", "now") if i == 0 else ("now",))
        args.out.write_text(json.dumps(report, indent=2))  # each finished part survives a later failure
    if not args.skip_soak:
        report["soak"] = []
        for layout in ("before", "now"):
            report["soak"].append(soak(layout, args.chats, args.warmup, args.concurrency))
            args.out.write_text(json.dumps(report, indent=2))

    print(f"{os.cpu_count()} cores; " + ", ".join(f"{k} {v}" for k, v in report["versions"].items()))
    if "soak" in report:
        runs = report["soak"]
        for s in runs:
            print(f"\nSoak, store {s['layout']}: {s['chats']} chats (concurrency {s['concurrency']}, "
                  f"{s['failed_chats']} failed) after {s['warmup_chats']} warm-up chats; {s['stored_points']} "
                  f"points stored; chats took {s['chat_seconds']} s, all stored after {s['stored_all_after_seconds']} s")
        print("\n| gateway RSS, MB (anon / mapped files) | " + " | ".join(f"store {s['layout']}" for s in runs) + " |")
        print("|---|" + "---|" * len(runs))
        for label, key in (("fresh start, empty store", "rss_fresh_start"), ("start (after warm-up)", "rss_start"),
                           ("end of chats", "rss_end_of_chats"), ("all stored (drained)", "rss_drained"),
                           ("restarted on the stored data", "rss_restarted")):
            print(f"| {label} | " + " | ".join(
                f"{mb(s[key]['rss'])} ({mb(s[key]['anon'])} / {mb(s[key]['file'])})" for s in runs) + " |")
        print("| peak during the soak | " + " | ".join(mb(s["rss_peak"]) for s in runs) + " |")
        print("| **growth over the soak** (drained - start) | "
              + " | ".join(f"**{s['growth_bytes'] / MB:.1f}**" for s in runs) + " |")
        print("| bytes per stored exchange | "
              + " | ".join(f"{s['growth_bytes_per_stored_exchange']:.0f}" for s in runs) + " |")
        print("| restart - fresh start | " + " | ".join(f"{s['restart_vs_fresh_bytes'] / MB:.1f}" for s in runs) + " |")
    print("\nStore only: RSS growth of a process holding an Edge shard (MB; anon / mapped files in brackets)")
    print("| layout | points | after writing | reopened + 100 searches | indexed, reopened + 100 searches "
          "| per 100k exchanges (last column filled) | disk MB |")
    print("|---|---|---|---|---|---|---|")
    for r in store_rows:
        def cell(key: str, row: dict = r) -> str:
            g = row.get(key)
            return f"{mb(g['rss'])} ({mb(g['anon'])} / {mb(g['file'])})" if g else "-"
        best = r.get("indexed_reopened_and_searched") or r["reopened_and_searched"]
        per_100k = best["rss"] / r["points"] * 100_000
        print(f"| {r['layout']} | {r['points']} | {cell('written')} | {cell('reopened_and_searched')} | "
              f"{cell('indexed_reopened_and_searched')} | {mb(per_100k)} | {mb(r['disk_bytes'])} |")


if __name__ == "__main__":
    main()

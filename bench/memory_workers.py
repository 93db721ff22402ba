"""Ingest throughput of worker processes, full-size CLIP (random weights) fp32 vs int8, in exchanges/s.

    make bench-memory-workers     # or: .venv/bin/python -m bench.memory_workers [--models DIR]

A backlog of exchanges (a photo-like 384x384 PNG, a question of ~15 words, an answer of ~60) is split
into one disjoint share per process: a SQLite journal each, one blob folder for all. Each process runs
the real IngestWorker with embed_threads=1 (CLIP, the sentence model and BM25, one onnxruntime thread
each) into its own embedded Qdrant shard: it loads its models (with int8, builds them if missing and
runs the start-up agreement check), warms up, waits for a common start, and drains its share. The
aggregate is every exchange over the time from the start to the last process done.

With `--postgres` the processes share one backlog instead, as `visionrag worker`s do: one journal on a
PostgreSQL server of its own (tests.plugins.postgres), each process claiming batches from it
(`Journal.claim`, FOR UPDATE SKIP LOCKED) under its own worker name.

Per exchange, each process also measures where its CPU time goes: CLIP vision and text, the sentence
model, BM25, image decoding, blob reads, the store's upsert and the journal. `CPU ms/exch` is the processes'
CPU time over the exchanges; the ceiling, `cores x 1000 / CPU ms`, is the throughput this box would
reach if ingest had every core to itself. The box may be shared: `others' cores` is how many cores
the rest of it kept busy during the run (from /proc/stat, less the workers' own CPU time).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing as mp
import os
import platform
import queue as queue_module
import resource
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path
from typing import Any

from bench.memory_ingest import ANSWER, QUESTION, photo_png
from tests.plugins.postgres import running_postgres

ROOT = Path(__file__).resolve().parent.parent
FULL_CLIP = ROOT / "models" / "clip-full"
PRECISIONS = ("fp32", "int8", "clip-int8")
STAGES = ("clip_vision", "clip_text", "sentence", "bm25", "decode", "blobs", "store", "journal")


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def open_journal(data_dir: Path, index: int, url: str | None) -> Any:
    """Process `index`'s journal: its own SQLite share, or the one PostgreSQL journal they all claim from."""
    from gateway.journal.postgres import PostgresJournal
    from gateway.journal.sqlite import SQLiteJournal

    return PostgresJournal(url, pool_size=2) if url else SQLiteJournal(data_dir / f"journal-{index}.sqlite3")


def queue(data_dir: Path, shares: int, exchanges: int, side: int, url: str | None) -> None:
    """`exchanges` exchanges dealt round-robin into `shares` journals (one, on PostgreSQL), their images in
    one blob folder."""
    from gateway.journal import Exchange, ImageRef
    from gateway.journal.disk import DiskBlobStore

    blobs = DiskBlobStore(data_dir / "images")
    journals = [open_journal(data_dir, i, url) for i in range(1 if url else shares)]
    for n in range(exchanges):
        journals[n % len(journals)].append(Exchange(
            id=uuid.uuid4().hex, created_at=time.time(), endpoint="chat.completions", model="bench",
            tenant="default", user=None, messages=[{"role": "user", "text": f"{QUESTION} ({n})"}],
            images=[ImageRef(blobs.put(photo_png(n, side)), "image/png")], answer=f"{ANSWER} ({n})",
            finish_reason="stop", usage=None, latency_ms=1.0,
        ))
    for journal in journals:
        journal.close()


class Stopwatch:
    """CPU seconds each stage spent, by wrapping the methods the worker calls. The thread's own CPU time,
    not wall time: with one onnxruntime thread the models run on the calling thread, and CPU time holds
    still when other work on the box takes the cores."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)

    def wrap(self, owner: Any, method: str, stage: str) -> None:
        inner: Callable[..., Any] = getattr(owner, method)

        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.thread_time()
            try:
                return inner(*args, **kwargs)
            finally:
                self.seconds[stage] += time.thread_time() - started

        setattr(owner, method, timed)


def work(index: int, data_dir: str, models: str, precision: str, clip_only: bool, batch: int, url: str | None,
         ready: Any, start: Any, results: Any) -> None:
    """One worker process: load, warm up, wait for the start, drain its share, report."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    from gateway.journal.disk import DiskBlobStore
    from gateway.memory.ingest import IngestWorker
    from gateway.memory.service import embedder_from_settings, text_encoders_from_settings
    from gateway.memory.store.edge import EdgeStore
    from gateway.settings import Settings

    folder = Path(data_dir)
    settings = Settings(_env_file=None, data_dir=folder, fastembed_cache_dir=Path(models),
                        clip_int8=precision != "fp32",
                        embed_threads=1, embed_batch_size=batch)
    loaded = time.perf_counter()
    clip = embedder_from_settings(settings)
    # clip-int8: the sentence model left fp32, to show its share.
    text = text_encoders_from_settings(settings.model_copy(update={"clip_int8": precision == "int8"}))
    clip.load()
    text.load()
    load_s = time.perf_counter() - loaded
    clip.embed_images([photo_png(10_000 + index, 384)])  # first runs allocate
    clip.embed_texts([QUESTION, ANSWER])
    text.sentences([QUESTION, ANSWER])
    text.terms_document([QUESTION])

    journal = open_journal(folder, index, url)
    blobs = DiskBlobStore(folder / "images")
    store = EdgeStore(folder / f"shard-{index}")
    store.ensure_schema()
    watch = Stopwatch()
    for owner, method, stage in ((clip, "embed_images", "clip_vision"), (clip, "embed_texts", "clip_text"),
                                 (clip, "decode_image", "decode"), (text, "sentences", "sentence"),
                                 (text, "terms_document", "bm25"), (blobs, "get", "blobs"),
                                 (store, "upsert", "store"), (journal, "claim", "journal"),
                                 (journal, "mark_ingested", "journal"), (journal, "present", "journal")):
        watch.wrap(owner, method, stage)
    # clip_only: points get CLIP's vectors alone, as before the sentence model and BM25 were added.
    worker = IngestWorker(journal, blobs, clip, store, batch_size=batch, text=None if clip_only else text,
                          name=f"bench-{index}")

    ready.put(index)
    start.wait()
    began, cpu0 = time.monotonic(), cpu_s()
    done = worker.drain()
    ended, cpu = time.monotonic(), cpu_s() - cpu0
    assert store.count() == done  # (a shared backlog may still have another process's last batch)
    store.close()
    journal.close()
    rss_mb = int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    results.put({"index": index, "exchanges": done, "began": began, "ended": ended, "cpu_s": cpu,
                 "load_s": load_s, "stages_s": dict(watch.seconds), "rss_mb": rss_mb,
                 "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024})


def busy_s() -> float:
    """CPU seconds the whole box has spent busy since boot (every process, not just ours)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def gather(source: Any, count: int, procs: list[Any], timeout_s: float) -> list[Any]:
    """`count` items from a queue the worker processes fill; a process that died fails the run at once."""
    items: list[Any] = []
    deadline = time.monotonic() + timeout_s
    while len(items) < count:
        try:
            items.append(source.get(timeout=1))
        except queue_module.Empty:
            dead = [p.exitcode for p in procs if p.exitcode not in (None, 0)]
            if dead or time.monotonic() > deadline:
                raise SystemExit(f"a worker process failed (exit codes {dead}) or timed out") from None
    return items


def run(processes: int, precision: str, clip_only: bool, exchanges: int, batch: int, models: Path,
        side: int, postgres: Any) -> dict:
    ctx = mp.get_context("spawn")  # a fresh interpreter per worker, as separate worker processes are
    url = None
    if postgres is not None:  # a fresh database per run
        database = f"bench_{uuid.uuid4().hex[:8]}"
        with postgres.admin() as admin:
            admin.execute(f"CREATE DATABASE {database}")
        url = postgres.url(database)
    with tempfile.TemporaryDirectory(prefix="visionrag-bench-workers-") as tmp:
        queue(Path(tmp), processes, exchanges, side, url)
        ready, results, start = ctx.Queue(), ctx.Queue(), ctx.Event()
        procs = [ctx.Process(target=work, args=(i, tmp, str(models), precision, clip_only, batch, url, ready,
                                                start, results))
                 for i in range(processes)]
        for proc in procs:
            proc.start()
        gather(ready, processes, procs, 600)
        started, busy0 = time.monotonic(), busy_s()
        start.set()
        rows = gather(results, processes, procs, 1800)
        busy = busy_s() - busy0
        for proc in procs:
            proc.join()
    done = sum(r["exchanges"] for r in rows)
    assert done == exchanges, (done, exchanges)
    wall = max(r["ended"] for r in rows) - started
    ours = sum(r["cpu_s"] for r in rows)
    stages = {stage: sum(r["stages_s"].get(stage, 0.0) for r in rows) / done * 1000 for stage in STAGES}
    cpu_ms = ours / done * 1000
    stages["other"] = cpu_ms - sum(stages.values())
    return {
        "journal": "postgres" if url else "sqlite", "processes": processes, "precision": precision, "clip_only": clip_only, "exchanges": done, "wall_s": wall, "per_s": done / wall,
        "cpu_ms": cpu_ms, "stages_ms": stages,
        # Cores the rest of the box kept busy meanwhile: how much of the machine the workers did not get.
        "others_cores": max(0.0, busy - ours) / wall, "load_s": max(r["load_s"] for r in rows),
        "rss_mb": max(r["rss_mb"] for r in rows), "max_rss_mb": max(r["max_rss_mb"] for r in rows),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--exchanges", type=int, default=240)
    parser.add_argument("--batch", type=int, default=16, help="ingest batch size (VISIONRAG_EMBED_BATCH_SIZE)")
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--precision", choices=PRECISIONS, nargs="+", default=["fp32", "int8"],
                        help="int8: what VISIONRAG_CLIP_INT8 runs (CLIP and the sentence model); clip-int8: CLIP alone")
    parser.add_argument("--side", type=int, default=384, help="image side in pixels")
    parser.add_argument("--clip-only", action="store_true",
                        help="points get CLIP's vectors alone (no sentence model, no BM25)")
    parser.add_argument("--models", type=Path, default=FULL_CLIP,
                        help="fastembed cache with the full-size CLIP and the text models")
    parser.add_argument("--postgres", action="store_true",
                        help="one shared backlog on PostgreSQL, claimed by the processes (as `visionrag worker`s)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "memory_workers.json")
    args = parser.parse_args()
    if not (args.models / ".built").exists():
        raise SystemExit(f"{args.models} is missing: run `make bench-memory-workers` (it builds the models)")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    with running_postgres() if args.postgres else contextlib.nullcontext() as postgres:
        rows = [run(n, precision, args.clip_only, args.exchanges, args.batch, args.models, args.side, postgres)
                for precision in args.precision for n in args.processes]
    cores = os.cpu_count() or 1
    versions = {p: version(p) for p in ("fastembed", "onnxruntime", "onnx", "qdrant-edge-py", "numpy")}
    report = {"python": platform.python_version(), "cores": cores, "versions": versions, "batch": args.batch,
              "side": args.side, "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))

    print(("one PostgreSQL backlog claimed by every process; " if args.postgres else "a SQLite share per process; ")
          + f"{args.exchanges} exchanges ({args.side}x{args.side} PNG, question, answer), full-size random-weight "
          f"CLIP ViT-B/32, batch {args.batch}, embed_threads=1 per process, {cores} cores; "
          + ", ".join(f"{k} {v}" for k, v in versions.items()))
    print("| models | processes | exch/s | CPU ms/exch | ceiling exch/s | others' cores | "
          + " | ".join(f"{s} ms" for s in (*STAGES, "other")) + " | RSS MB (peak) |")
    print("|---" * (len(STAGES) + 8) + "|")
    for r in rows:
        print(f"| {r['precision']}{' (CLIP vectors only)' if r['clip_only'] else ''} | {r['processes']} | {r['per_s']:.1f} | {r['cpu_ms']:.0f} | "
              f"{cores * 1000 / r['cpu_ms']:.1f} | {r['others_cores']:.2f} | "
              + " | ".join(f"{r['stages_ms'][s]:.1f}" for s in (*STAGES, "other"))
              + f" | {r['rss_mb']:.0f} ({r['max_rss_mb']:.0f}) |")
    print("Stage columns: CPU ms per exchange in each stage; other: the rest of CPU ms/exch (Python, threads).")


if __name__ == "__main__":
    main()

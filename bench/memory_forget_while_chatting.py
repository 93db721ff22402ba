"""Do chats wait while memory forgets? The journal's append latency while 10,000 exchanges are forgotten.

    make bench-memory-forget      # or: .venv/bin/python -m bench.memory_forget_while_chatting [--old-rev 805cbfe]

Every chat ends with `Journal.append`, called on the event loop by the gateway's recorder: whatever holds
the journal meanwhile delays the chat and every other request on that loop. Set-up, once: the embedded
store (Qdrant Edge) filled with the points of N exchanges (every named vector of the real schema, random
values), copied fresh for each scenario. Each scenario runs in a process of its own, which first journals
the same N exchanges (one ~1 KB question and answer and one image each, all older than a cutoff). Then an
asyncio loop runs C chats, each appending its exchange exactly as the recorder does (on the loop), after
a pause of --think-ms (the model's time); the wall time of every append (lock wait and commit) is kept.
- baseline: the chats alone, for --baseline-s;
- forgetting: the same chats while a worker thread forgets all N, as POST /exchanges/forget does
  (`Forgetter.forget_where` by date), with the history service's finisher thread running (it deletes
  images and points, and empties the journal's WAL); measured from the request until nothing is left to
  finish;
- with --old-rev REV: the forgetting scenario on REV's code (a git worktree, the same venv), in the same
  rounds: there `forget_where` does everything inline, 500 rows per transaction.
Rounds are interleaved (this box is noisy); percentiles are over the appends of all rounds pooled.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TENANT = "bench"
T0 = 1.75e9  # the forgotten exchanges' times: T0 + n; chats during the run are recorded now, long after
QUESTION = "What does the chart in this screenshot show, and which quarter had the highest revenue? " * 2
ANSWER = ("The chart shows quarterly revenue for 2024. The third quarter is the highest, at about 4.2 "
          "million, driven by the new enterprise plan; the first quarter is the lowest. ") * 5


def exchange_id(n: int) -> str:
    return f"{n:032x}"


def image_sha(n: int) -> str:
    return f"{n:064x}"


# --- set-up: the store's points (this checkout's code) -------------------------------------------------
def fill_store(path: Path, count: int) -> None:
    import numpy as np

    from gateway.memory.points import point_id
    from gateway.memory.store.edge import EdgeStore
    from gateway.memory.store.points import StorePoint, rfc3339
    from gateway.memory.store.schema import SCHEMA, Sparse

    rng = np.random.default_rng(0)

    def unit(size: int) -> list[float]:
        v = rng.standard_normal(size).astype(np.float32)
        return (v / np.linalg.norm(v)).tolist()

    def vectors() -> dict:
        out: dict = {}
        for spec in SCHEMA:
            if spec.kind == "dense":
                out[spec.name] = unit(spec.size)
            elif spec.kind == "multi":
                out[spec.name] = [unit(spec.size) for _ in range(3)]
            else:
                terms = sorted(set(rng.integers(0, 2**31, 40).tolist()))
                out[spec.name] = Sparse(tuple(terms), tuple(1.0 for _ in terms))
        return out

    store = EdgeStore(path)
    store.ensure_schema()
    for lo in range(0, count, 256):
        store.upsert([StorePoint(point_id(exchange_id(n), 0), vectors(), {
            "exchange_id": exchange_id(n), "tenant": TENANT, "time": rfc3339(T0 + n), "ts": T0 + n,
            "model": "bench-vlm", "user": None, "endpoint": "chat.completions", "status": "complete",
            "image_count": 1, "image_index": 0, "image_sha256": image_sha(n), "image_mime": "image/png"})
            for n in range(lo, min(count, lo + 256))])
    store.close()


# --- one scenario, in its own process (the code of the tree on PYTHONPATH) -----------------------------
def scenario(data: Path, kind: str, count: int, concurrency: int, think_s: float, baseline_s: float) -> dict:
    import gateway
    from gateway.journal import Exchange, ImageRef

    try:
        from gateway.journal.disk import DiskBlobStore
        from gateway.journal.sqlite import SQLiteJournal
    except ImportError:  # --old-rev from before the journal's Protocols: the classes had these names
        from gateway.journal import BlobStore as DiskBlobStore  # type: ignore[assignment]
        from gateway.journal import Journal as SQLiteJournal  # type: ignore[assignment]

    def exchange(n: int | None, created_at: float) -> Exchange:
        return Exchange(
            id=exchange_id(n) if n is not None else uuid.uuid4().hex, created_at=created_at,
            endpoint="chat.completions", model="bench-vlm", tenant=TENANT, user=None,
            messages=[{"role": "user", "text": QUESTION}],
            images=[ImageRef(image_sha(n) if n is not None else image_sha(10**9), "image/png")],
            answer=ANSWER, finish_reason="stop", usage=None, latency_ms=1.0)

    journal = SQLiteJournal(data / "journal.sqlite3")
    blobs = DiskBlobStore(data / "images")
    for n in range(count):
        (blobs.root / image_sha(n)[:2]).mkdir(exist_ok=True)
        blobs.path(image_sha(n)).write_bytes(b"an image of exchange %d" % n)
        journal.append(exchange(n, T0 + n))
    journal.close()  # the last connection checkpoints and removes the WAL: a settled journal
    journal = SQLiteJournal(data / "journal.sqlite3")

    forgetter = finisher = store = None
    if kind == "forgetting":
        from gateway.memory.store.edge import EdgeStore

        store = EdgeStore(data / "shard")
        store.ensure_schema()
        try:  # history owns forgetting since issue 17; the store's part is memory's, plugged in
            from gateway.history import forget
            from gateway.memory.forget_points import StorePoints

            forgetter = forget.Forgetter(journal, blobs, StorePoints(store))
        except ImportError:  # --old-rev from before: memory did it all
            from gateway.memory import forget, thumbnails  # type: ignore[attr-defined,no-redef]

            forgetter = forget.Forgetter(journal, blobs, store, thumbnails.Thumbnails(data / "thumbnails"))
        if hasattr(forget, "Finisher"):  # started in the background since issue 16; absent before
            finisher = forget.Finisher(forgetter)
            finisher.start()
    latencies: list[float] = []
    window: dict[str, float] = {}

    def forget_all() -> None:
        started = time.perf_counter()
        forgotten = forgetter.forget_where(TENANT, before=T0 + count)
        window["answered_s"] = time.perf_counter() - started  # what the client waited for
        while finisher is not None and journal.forgetting(1):  # the finisher's part
            time.sleep(0.01)
        window["finished_s"] = time.perf_counter() - started
        window["forgotten"] = forgotten

    async def chat(stop: asyncio.Event) -> None:
        while not stop.is_set():
            await asyncio.sleep(think_s)
            one = exchange(None, time.time())
            started = time.perf_counter()
            journal.append(one)  # on the loop, as gateway.proxy.recorder does
            if window.get("measuring"):
                latencies.append((time.perf_counter() - started) * 1000)

    async def run() -> None:
        stop = asyncio.Event()
        chats = [asyncio.create_task(chat(stop)) for _ in range(concurrency)]
        await asyncio.sleep(0.5)  # warm
        window["measuring"] = 1
        if forgetter is not None:
            await asyncio.get_running_loop().run_in_executor(None, forget_all)  # a route's worker thread
        else:
            await asyncio.sleep(baseline_s)
        window["measuring"] = 0
        stop.set()
        await asyncio.gather(*chats)

    asyncio.run(run())
    if finisher is not None:
        finisher.stop()
    if store is not None:
        assert store.count(TENANT) == 0, "the store still holds points of the forgotten exchanges"
        store.close()
    if kind == "forgetting":
        assert journal.select_ids(TENANT, before=T0 + count, limit=1) == [], "not everything was forgotten"
    journal.close()
    return {"gateway": str(Path(gateway.__file__).parent.parent), "appends_ms": latencies,
            **{k: v for k, v in window.items() if k != "measuring"}}


def run_scenario(tree: Path, template: Path, kind: str, args: argparse.Namespace) -> dict:
    data = Path(tempfile.mkdtemp(prefix="visionrag-bench-forget-"))
    try:
        if kind == "forgetting":
            shutil.copytree(template, data / "shard")
        result = subprocess.run(
            [sys.executable, str(Path(__file__).resolve()), "--scenario", kind, "--data", str(data),
             "--count", str(args.count), "--concurrency", str(args.concurrency), "--think-ms", str(args.think_ms),
             "--baseline-s", str(args.baseline_s)],
            cwd=tree, env={**os.environ, "PYTHONPATH": str(tree)}, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"{kind} on {tree} failed:\n{result.stderr[-3000:]}")
        outcome = json.loads(result.stdout.strip().splitlines()[-1])
        assert outcome["gateway"] == str(tree), f"ran {outcome['gateway']}'s gateway, not {tree}'s"
        return outcome
    finally:
        shutil.rmtree(data, ignore_errors=True)


def summary(rounds: list[dict]) -> dict:
    pooled = sorted(ms for r in rounds for ms in r["appends_ms"])

    def pct(p: float) -> float:
        return pooled[min(len(pooled) - 1, int(p / 100 * len(pooled)))]

    out = {"appends": len(pooled), "p50_ms": pct(50), "p99_ms": pct(99), "max_ms": pooled[-1],
           "p99_ms_per_round": [sorted(r["appends_ms"])[int(0.99 * len(r["appends_ms"]))] for r in rounds]}
    if "answered_s" in rounds[0]:
        out["answered_s"] = statistics.median(r["answered_s"] for r in rounds)
        out["finished_s"] = statistics.median(r["finished_s"] for r in rounds)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=10_000, help="exchanges forgotten")
    parser.add_argument("--concurrency", type=int, default=16, help="concurrent chats")
    parser.add_argument("--think-ms", type=float, default=10.0, help="pause before each chat's append (the model)")
    parser.add_argument("--baseline-s", type=float, default=3.0, help="length of the baseline's measurement")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of every scenario")
    parser.add_argument("--old-rev", help="also measure the forgetting scenario on this commit's code")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "memory_forget_while_chatting.json")
    parser.add_argument("--scenario", choices=("baseline", "forgetting"), help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.scenario:
        print(json.dumps(scenario(args.data, args.scenario, args.count, args.concurrency, args.think_ms / 1000,
                                  args.baseline_s)))
        return

    from bench.gateway_overhead import old_worktree

    work = Path(tempfile.mkdtemp(prefix="visionrag-bench-forget-store-"))
    old_tree = old_worktree(args.old_rev) if args.old_rev else None
    plan = [("baseline", ROOT, "baseline"), ("forgetting", ROOT, "forgetting")]
    if old_tree:
        plan.append((f"forgetting at {args.old_rev}", old_tree, "forgetting"))
    results: dict[str, list[dict]] = {name: [] for name, _, _ in plan}
    try:
        started = time.perf_counter()
        fill_store(work / "shard", args.count)
        print(f"store: {args.count} exchanges' points in {time.perf_counter() - started:.1f} s", file=sys.stderr)
        for round_ in range(args.rounds):
            for name, tree, kind in plan:
                results[name].append(run_scenario(tree, work / "shard", kind, args))
                print(f"round {round_ + 1}: {name} done", file=sys.stderr)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if old_tree:
            subprocess.run(["git", "worktree", "remove", "--force", str(old_tree)], cwd=ROOT, check=False)

    rows = {name: summary(rounds) for name, rounds in results.items()}
    report = {"count": args.count, "concurrency": args.concurrency, "think_ms": args.think_ms,
              "rounds": args.rounds, "old_rev": args.old_rev, "python": platform.python_version(),
              "sqlite": __import__("sqlite3").sqlite_version, "qdrant_edge": version("qdrant-edge-py"),
              "cpus": os.cpu_count(), "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"{args.count} exchanges forgotten while {args.concurrency} chats append ({args.think_ms:g} ms apart); "
          f"{args.rounds} rounds pooled; SQLite {report['sqlite']}, qdrant-edge {report['qdrant_edge']}")
    print("| scenario | appends | append p50 ms | append p99 ms (per round) | append max ms "
          "| forget answered s | forget finished s |")
    print("|---|---|---|---|---|---|---|")
    for name, row in rows.items():
        rounds = ", ".join(f"{v:.1f}" for v in row["p99_ms_per_round"])
        print(f"| {name} | {row['appends']} | {row['p50_ms']:.2f} | {row['p99_ms']:.2f} ({rounds}) | "
              f"{row['max_ms']:.1f} | {row.get('answered_s', float('nan')):.2f} | "
              f"{row.get('finished_s', float('nan')):.2f} |")


if __name__ == "__main__":
    main()

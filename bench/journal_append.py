"""Journal append latency at concurrency 16: SQLite against PostgreSQL, in the same run, on the same disk.

    make bench-journal            # or: .venv/bin/python -m bench.journal_append

The run starts a PostgreSQL server of its own (tests.plugins.postgres: initdb in a temporary folder on
the same disk as the SQLite files, server defaults: fsync on, `synchronous_commit=on`) and measures each
journal in two ways:
- threads: C threads, each appending one exchange after a pause (the model's time: uniform around
  --think-ms, so that the appends do not fall into step), as
  many callers of `Journal.append` at once; the PostgreSQL journal's pool has one connection per thread;
- recorder: C chats on one asyncio loop, each recording its exchange through the gateway's Recorder
  (gateway.proxy.recorder), whose group commit joins the exchanges finished in the same turn of the loop
  into one `append_many`, as the gateway runs it: for SQLite on the loop (its time is time every request
  on that loop waits), for PostgreSQL on a thread, one commit in flight while the next batch gathers.
Exchanges are ~1 KB of question and answer with one image (stored once; a reference per exchange), in
journals already holding --prefill exchanges. Journals: SQLite with synchronous NORMAL (the default: no
fsync per commit) and FULL (an fsync per commit), PostgreSQL with `synchronous_commit` on (the default:
the commit waits for the WAL flush) and off (it does not, like SQLite's NORMAL). Rounds are interleaved
(the box is shared and noisy); percentiles are over the appends of all rounds pooled, the first
--warmup-s of each measurement left out.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import platform
import random
import sqlite3
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from importlib.metadata import version
from pathlib import Path

from gateway.images.loader import LoadedImage
from gateway.journal import Exchange, ImageRef, Journal
from gateway.journal.disk import DiskBlobStore
from gateway.journal.postgres import PostgresJournal
from gateway.journal.sqlite import SQLiteJournal
from gateway.proxy.recorder import Outcome, PendingExchange, Recorder
from tests.plugins.postgres import PostgresServer, running_postgres

ROOT = Path(__file__).resolve().parent.parent
TENANT = "bench"
QUESTION = "What does the chart in this screenshot show, and which quarter had the highest revenue? " * 2
ANSWER = ("The chart shows quarterly revenue for 2024. The third quarter is the highest, at about 4.2 "
          "million, driven by the new enterprise plan; the first quarter is the lowest. ") * 4
IMAGE = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 80  # the bytes do not matter: stored once, by sha256
IMAGE_SHA = hashlib.sha256(IMAGE).hexdigest()
USAGE = {"prompt_tokens": 812, "completion_tokens": 96, "total_tokens": 908}

# name -> how to open a fresh journal of that kind (folder for SQLite, a new database for PostgreSQL)
Opener = Callable[[Path, PostgresServer, int], Journal]


def _postgres(synchronous_commit: str) -> Opener:
    def open_(folder: Path, server: PostgresServer, pool_size: int) -> Journal:
        name = f"bench_{uuid.uuid4().hex[:12]}"
        with server.admin() as admin:
            admin.execute(f"CREATE DATABASE {name}")
        options = "" if synchronous_commit == "on" else "?options=-csynchronous_commit%3Doff"
        return PostgresJournal(server.url(name) + options, pool_size=pool_size)
    return open_


JOURNALS: dict[str, Opener] = {
    "SQLite, synchronous=NORMAL (default)": lambda folder, _, __: SQLiteJournal(folder / f"{uuid.uuid4().hex}.db"),
    "SQLite, synchronous=FULL": lambda folder, _, __: SQLiteJournal(folder / f"{uuid.uuid4().hex}.db", "FULL"),
    "PostgreSQL, synchronous_commit=on (default)": _postgres("on"),
    "PostgreSQL, synchronous_commit=off": _postgres("off"),
}


def exchange(n: int | None = None) -> Exchange:
    return Exchange(id=uuid.uuid4().hex if n is None else f"{n:032x}", created_at=time.time(),
                    endpoint="chat.completions", model="llama-3.2-11b-vision", tenant=TENANT, user="alice",
                    messages=[{"role": "user", "text": QUESTION}], images=[ImageRef(IMAGE_SHA, "image/png")],
                    answer=ANSWER, finish_reason="stop", usage=USAGE, latency_ms=812.5)


def prefill(journal: Journal, count: int) -> None:
    for start in range(0, count, 500):
        journal.append_many([exchange(n) for n in range(start, min(count, start + 500))])


def measure_threads(journal: Journal, args: argparse.Namespace) -> dict:
    """C threads appending; each append's wall time, after the warm-up."""
    stop, started = threading.Event(), time.perf_counter()
    samples: list[list[float]] = [[] for _ in range(args.concurrency)]

    def work(think: random.Random, mine: list[float]) -> None:
        while not stop.is_set():
            time.sleep(think.uniform(0.5, 1.5) * args.think_ms / 1000)
            one = exchange()
            t0 = time.perf_counter()
            journal.append(one)
            if t0 - started > args.warmup_s:
                mine.append(time.perf_counter() - t0)

    threads = [threading.Thread(target=work, args=(random.Random(n), mine)) for n, mine in enumerate(samples)]
    for thread in threads:
        thread.start()
    time.sleep(args.warmup_s + args.seconds)
    stop.set()
    for thread in threads:
        thread.join()
    return {"appends": [s for mine in samples for s in mine], "seconds": args.seconds}


class _TimedJournal:
    """The journal with each `append_many` (one group commit) timed."""

    def __init__(self, journal: Journal) -> None:
        self.journal, self.commits = journal, []

    def append_many(self, exchanges: Sequence[Exchange]) -> None:
        t0 = time.perf_counter()
        self.journal.append_many(exchanges)
        self.commits.append((time.perf_counter() - t0, len(exchanges)))

    def append(self, one: Exchange) -> None:
        self.append_many([one])


def measure_recorder(journal: Journal, blobs: DiskBlobStore, args: argparse.Namespace) -> dict:
    """C chats on one loop, each recorded through the Recorder's group commit."""
    timed = _TimedJournal(journal)
    # Offloaded where the gateway does it: a journal across a network (gateway.runtime).
    recorder = Recorder(timed, blobs, offload=isinstance(journal, PostgresJournal))  # type: ignore[arg-type]
    image = LoadedImage(data=IMAGE, mime="image/png", sha256=IMAGE_SHA, width=64, height=64, source_url=None,
                        data_url="")
    samples: list[float] = []

    async def chat(deadline: float, started: float, think: random.Random) -> None:
        while time.perf_counter() < deadline:
            pending = PendingExchange(endpoint="chat.completions", tenant=TENANT, model="llama-3.2-11b-vision",
                                      user="alice", messages=[{"role": "user", "text": QUESTION}], images=[image])
            await asyncio.sleep(think.uniform(0.5, 1.5) * args.think_ms / 1000)
            t0 = time.perf_counter()
            await recorder.record(pending, Outcome(answer=ANSWER, finish_reason="stop", usage=USAGE, model=None))
            if t0 - started > args.warmup_s:
                samples.append(time.perf_counter() - t0)

    async def run() -> None:
        started = time.perf_counter()
        await asyncio.gather(*(chat(started + args.warmup_s + args.seconds, started, random.Random(n))
                               for n in range(args.concurrency)))

    asyncio.run(run())
    commits = timed.commits[len(timed.commits) // 10:]  # past the warm-up, roughly
    return {"appends": samples, "seconds": args.seconds, "commits": [c for c, _ in commits],
            "batch": [n for _, n in commits]}


def one_round(name: str, mode: str, folder: Path, server: PostgresServer, args: argparse.Namespace) -> dict:
    journal = JOURNALS[name](folder, server, args.concurrency)
    try:
        prefill(journal, args.prefill)
        if mode == "threads":
            return measure_threads(journal, args)
        return measure_recorder(journal, DiskBlobStore(folder / "images"), args)
    finally:
        journal.close()


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] * 1000


def summary(rounds: list[dict]) -> dict:
    appends = [s for r in rounds for s in r["appends"]]
    row = {"appends": len(appends), "p50_ms": pct(appends, 50), "p99_ms": pct(appends, 99),
           "p99_ms_per_round": [pct(r["appends"], 99) for r in rounds],
           "per_s": len(appends) / sum(r["seconds"] for r in rounds)}
    if "commits" in rounds[0]:
        commits = [c for r in rounds for c in r["commits"]]
        row |= {"commit_p50_ms": pct(commits, 50), "commit_p99_ms": pct(commits, 99),
                "batch_mean": statistics.fmean(n for r in rounds for n in r["batch"])}
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--concurrency", type=int, default=16, help="appending threads, or chats on the loop")
    parser.add_argument("--think-ms", type=float, default=10.0, help="pause before each append (the model)")
    parser.add_argument("--seconds", type=float, default=4.0, help="measurement per round and journal")
    parser.add_argument("--warmup-s", type=float, default=0.5, help="left out at the start of each measurement")
    parser.add_argument("--prefill", type=int, default=10_000, help="exchanges in each journal beforehand")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of every journal")
    parser.add_argument("--modes", default="threads,recorder", help="threads, recorder or both")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "journal_append.json")
    args = parser.parse_args()
    modes = args.modes.split(",")

    results: dict[tuple[str, str], list[dict]] = {(name, mode): [] for mode in modes for name in JOURNALS}
    with running_postgres() as server, tempfile.TemporaryDirectory(prefix="bench-journal-") as tmp:
        with server.admin() as admin:
            server_version = admin.execute("SHOW server_version").fetchone()[0]
        for round_ in range(args.rounds):
            for (name, mode), rounds in results.items():
                rounds.append(one_round(name, mode, Path(tmp), server, args))
            print(f"round {round_ + 1} done", flush=True)

    rows = {f"{name} | {mode}": summary(rounds) for (name, mode), rounds in results.items()}
    report = {"args": {k: str(v) for k, v in vars(args).items()}, "python": platform.python_version(),
              "sqlite": sqlite3.sqlite_version, "postgres": server_version, "psycopg": version("psycopg"),
              "cpus": os.cpu_count(), "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))

    print(f"\nJournal append at concurrency {args.concurrency} ({args.think_ms:g} ms apart), journals prefilled with "
          f"{args.prefill} exchanges; {args.rounds} rounds of {args.seconds:g} s pooled; SQLite {report['sqlite']}, "
          f"PostgreSQL {server_version} (loopback, same disk), psycopg {report['psycopg']}, {report['cpus']} CPUs")
    print("| journal | mode | appends | append p50 ms | append p99 ms (per round) | appends/s "
          "| commit p50 / p99 ms (SQLite: on the loop) | exchanges per commit |")
    print("|---|---|---|---|---|---|---|---|")
    for name, row in rows.items():
        rounds = ", ".join(f"{v:.2f}" for v in row["p99_ms_per_round"])
        commit = (f"{row['commit_p50_ms']:.2f} / {row['commit_p99_ms']:.2f} | {row['batch_mean']:.2f}"
                  if "commit_p50_ms" in row else "- | -")
        print(f"| {name} | {row['appends']} | {row['p50_ms']:.2f} | {row['p99_ms']:.2f} ({rounds}) "
              f"| {row['per_s']:.0f} | {commit} |")


if __name__ == "__main__":
    main()

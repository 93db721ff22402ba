"""What memory adds before forwarding a chat whose last user message is 8 MiB: time and RSS.

    make bench-memory-long-message  # or: .venv/bin/python -m bench.memory_chat_long_message [--old-rev REV]

A chat may carry up to the body limit (32 MiB) of text, and memory in the answer searches by the last
user message. Measured: `Augmenter.augment`, the whole step a chat with `"visionrag": {"memory": true}`
takes before it is forwarded (bench.memory_chat_retrieval's setup: its stored exchanges ingested by the
real worker into the embedded store, CLIP full-size random weights, the genuine MiniLM and BM25, one
onnxruntime thread, bench.fake_upstream in its own process answering /tokenize as vLLM does), for:
- a short question that finds a past exchange: what a usual memory chat costs, for reference;
- 1 KiB that begins with such a question and goes on with a pasted log: long enough that the models
  read as much as they ever do (CLIP 77 tokens, the sentence model 256), for reference;
- 8 MiB that begins with such a question and goes on with a pasted log: sources are found, so the
  prompt is counted by the upstream's /tokenize too;
- 8 MiB of pasted log that finds nothing.
Each in a fresh process, so one message's peak RSS is not another's: the same request with memory off
first (the baseline), then with memory on, then retrieval alone (`Memory.recall`: the models and the
store, without the prompt's token count). Time: p50 and max over the runs. RSS added: the process's
peak RSS during the run (VmHWM, reset before each run through /proc/self/clear_refs) minus its RSS just
before it; the max over the runs.

With `--old-rev REV` the same processes run the gateway of that commit (a git worktree beside this one,
as bench.gateway_overhead does): the code before a change, on the same box, in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

ROOT = Path(__file__).resolve().parent.parent
MIB = 1 << 20
KINDS = {
    "short": "a short question (sources found)",
    "kib": "1 KiB: a question, then a pasted log (sources found)",
    "long_found": "{mib} MiB: a question, then a pasted log (sources found)",
    "long_none": "{mib} MiB of pasted log (nothing found)",
}


def pasted_log(size: int) -> str:
    """`size` characters of log lines with many distinct tokens (ids, timings), as a pasted log has, and
    none of the stored exchanges' words or numbers: what it finds is by the question before it."""
    lines, total, n = [], 0, 0
    while total < size:
        line = (f"ts={1_767_000_000 + n} GET /api/v1/carts/{100_000 + n * 7919 % 900_000} status=ok "
                f"latency={1000 + n * 31 % 997}us pod=x{n % 16:x} trace={n * 2654435761 % 2**32:08x}\n")
        lines.append(line)
        total += len(line)
        n += 1
    return "".join(lines)[:size]


def rss_kib(field: str) -> int:
    return int(re.search(rf"{field}:\s+(\d+)", Path("/proc/self/status").read_text()).group(1))


def reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM back to the current RSS


async def measure(kind: str, args: argparse.Namespace) -> dict:
    """One message kind, in this (fresh) process: memory off, memory on, retrieval alone."""
    # Imported here: with --old-rev this process imports the gateway (and these helpers) of that commit.
    import gateway
    from bench.memory_chat_retrieval import ASKED_AGAIN, TENANT, Bench, percentiles
    from bench.memory_ingest import photo_png
    from bench.memory_quality import corpus
    from gateway.memory.embed import ClipEmbedder
    from gateway.memory.retrieval import RecallQuery
    from gateway.memory.store.base import SearchFilter
    from gateway.memory.text_embed import TextEncoders

    async def recall(b: Bench, message: str) -> tuple[float, str]:
        started = time.perf_counter()
        sources = await b.memory.recall(SearchFilter(TENANT), RecallQuery(message), k=4)
        return (time.perf_counter() - started) * 1000, f"{len(sources)} sources"

    assert Path(gateway.__file__).is_relative_to(args.tree), f"the gateway imported is {gateway.__file__}"
    pairs, _ = corpus()
    real = [(q, a, photo_png(1000 + i)) for i, (q, a) in enumerate(pairs[:args.stored])]
    clip = ClipEmbedder(cache_dir=args.clip_dir, threads=1)
    text = TextEncoders(cache_dir=ROOT / "models" / "text", threads=1)
    clip.load()
    text.load()
    question = ASKED_AGAIN.format(real[0][0])
    messages = {"short": question, "kib": question + "\n\n" + pasted_log(1024 - len(question) - 2),
                "long_found": question + "\n\n" + pasted_log(args.mib * MIB - len(question) - 2),
                "long_none": pasted_log(args.mib * MIB)}
    message = messages[kind]
    with tempfile.TemporaryDirectory(prefix="visionrag-bench-long-") as tmp:
        b = Bench(Path(tmp), args.upstream, clip, text)
        await b.pool.start()
        try:
            b.ingest(real)
            for q, _, _ in real[:8]:  # warm-up: first runs allocate, connections open
                await b.augment(ASKED_AGAIN.format(q), None)
            row: dict = {}
            # Memory off (nothing done: the baseline), memory on (the whole step before forwarding), and
            # retrieval alone (`Memory.recall`: the models and the store, without counting tokens).
            steps = {"off": lambda: b.augment(message, None, memory=False),
                     "on": lambda: b.augment(message, None, memory=True),
                     "recall": lambda: recall(b, message)}
            for step, run in steps.items():
                times, added, reasons = [], [], {}
                for _ in range(args.samples):
                    reset_peak()
                    before = rss_kib("VmRSS")
                    ms, reason = await run()
                    added.append((rss_kib("VmHWM") - before) / 1024)
                    times.append(ms)
                    reasons[reason] = reasons.get(reason, 0) + 1
                row[step] = {"ms": [percentiles(times)[0], round(max(times), 2)],
                             "rss_added_mb": round(max(added), 1), "reasons": reasons}
            return row
        finally:
            await b.pool.close()
            await b.memory.image_loader.fetcher.close()
            b.close()


def child(tree: Path, kind: str, upstream: str, args: argparse.Namespace, samples: int) -> dict:
    """`measure` in a fresh process importing the gateway under `tree`."""
    argv = [sys.executable, str(Path(__file__).resolve()), "--child", kind, "--tree", str(tree), "--upstream", upstream,
            "--samples", str(samples), "--clip-dir", str(args.clip_dir), "--stored", str(args.stored),
            "--mib", str(args.mib)]
    done = subprocess.run(argv, cwd=tree, env={**os.environ, "PYTHONPATH": str(tree)}, capture_output=True, text=True,
                          check=False)
    if done.returncode != 0:
        raise SystemExit(f"the {kind} measurement failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=20, help="runs per message kind, memory off and on")
    parser.add_argument("--mib", type=int, default=8, help="size of the long messages")
    parser.add_argument("--stored", type=int, default=40, help="exchanges in memory (bench.memory_quality's corpus)")
    parser.add_argument("--clip-dir", type=Path, default=ROOT / "models" / "clip-full",
                        help="CLIP in fastembed's cache layout (default: the full-size one, `make memory-models`)")
    parser.add_argument("--old-rev", help="also measure the gateway of this commit, in the same run")
    parser.add_argument("--old-samples", type=int, default=2, help="runs per kind for --old-rev (seconds each)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "memory_chat_long_message.json")
    parser.add_argument("--child", choices=tuple(KINDS), help=argparse.SUPPRESS)
    parser.add_argument("--tree", type=Path, default=ROOT, help=argparse.SUPPRESS)
    parser.add_argument("--upstream", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(asyncio.run(measure(args.child, args))))
        return
    if not (args.clip_dir / ".built").exists() or not (ROOT / "models" / "text" / ".built").exists():
        raise SystemExit("models missing: run `make memory-models`")

    from bench.gateway_overhead import free_port, old_worktree, start

    port = free_port()
    upstream = start("upstream", [sys.executable, "-m", "bench.fake_upstream", "--port", str(port)], port, core=None)
    old_tree = old_worktree(args.old_rev) if args.old_rev else None
    runs = [("this tree", ROOT, args.samples)] + ([(args.old_rev, old_tree, args.old_samples)] if old_tree else [])
    report: dict = {"mib": args.mib, "stored": args.stored, "clip": str(args.clip_dir), "runs": {}}
    try:
        for label, tree, samples in runs:
            for kind, what in KINDS.items():
                print(f"{label}: {what.format(mib=args.mib)} ...", file=sys.stderr, flush=True)
                report["runs"].setdefault(label, {})[kind] = child(tree, kind, upstream.url, args, samples)
    finally:
        upstream.stop()
        if old_tree is not None:
            subprocess.run(["git", "worktree", "remove", "--force", str(old_tree)], cwd=ROOT, check=False)
    report |= {"python": platform.python_version(), "cores": os.cpu_count(), "at": time.strftime("%Y-%m-%d"),
               "versions": {p: version(p) for p in ("fastembed", "onnxruntime", "tokenizers", "qdrant-edge-py")}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))

    print("| code | message | memory off p50 / max ms | memory on p50 / max ms | retrieval alone p50 / max ms "
          "| RSS added: off / on / retrieval (max MB) | memory's answer |")
    print("|---|---|---|---|---|---|---|")
    for label, rows in report["runs"].items():
        for kind, row in rows.items():
            off, on, alone = row["off"], row["on"], row["recall"]
            print(f"| {label} | {KINDS[kind].format(mib=args.mib)} | {off['ms'][0]} / {off['ms'][1]} | {on['ms'][0]} / {on['ms'][1]} | "
                  f"{alone['ms'][0]} / {alone['ms'][1]} | {off['rss_added_mb']} / {on['rss_added_mb']} / "
                  f"{alone['rss_added_mb']} | {', '.join(on['reasons'])} |")
    print(f"\ntarget: with memory on, a message of {args.mib} MiB adds under 50 ms and under 50 MB RSS")


if __name__ == "__main__":
    main()

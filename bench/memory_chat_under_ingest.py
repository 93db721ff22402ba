"""Does ingest slow chats down? Chat latency through the gateway with the ingest worker idle vs busy.

    make bench-memory-chat        # or: .venv/bin/python -m bench.memory_chat_under_ingest

A fake OpenAI upstream (bench/fake_upstream.py; answering at once is the strictest case: the latency
is all gateway) and the real gateway process (uvicorn, memory on, full-size random-weight CLIP, 1
onnxruntime thread). Every chat carries a ~20 KB PNG data: URL. Scenarios, in one run:
- memory off: the gateway without memory (the reference the gateway-overhead bench measures);
- ingest idle: memory on, empty backlog, and the worker's poll interval set to an hour so the chats'
  own exchanges are not embedded during the measurement;
- ingest busy: memory on with a backlog of full-size exchanges queued before start, so the worker
  embeds without pause for the whole measurement (checked: the backlog is still non-empty at the end);
  with the ingest thread niced (the default, VISIONRAG_INGEST_NICE=10) and not niced (0);
- control: memory off while the same CLIP work runs in ANOTHER process: what CPU contention alone
  costs, with no GIL or event-loop sharing involved.
Loads: the instant upstream at concurrency 1 and 8, and a slow upstream (200 ms, like a small VLM on
a GPU) at concurrency 8, where the gateway's own milliseconds are a small part of each chat.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from importlib.metadata import version
from pathlib import Path

import httpx

from bench.gateway_overhead import Server, free_port, make_png, measure, start
from serving.stack import stop_process_group

ROOT = Path(__file__).resolve().parent.parent
FULL_CLIP = ROOT / "models" / "clip-full"


def prefill(data_dir: Path, count: int) -> None:
    from bench.memory_ingest import ANSWER, QUESTION, photo_png
    from gateway.journal import Exchange, ImageRef
    from gateway.journal.disk import DiskBlobStore
    from gateway.journal.sqlite import SQLiteJournal

    journal = SQLiteJournal(data_dir / "journal.sqlite3")
    blobs = DiskBlobStore(data_dir / "images")
    for n in range(count):
        journal.append(Exchange(
            id=uuid.uuid4().hex, created_at=time.time(), endpoint="chat.completions", model="bench",
            tenant="default", user=None, messages=[{"role": "user", "text": f"{QUESTION} {n}"}],
            images=[ImageRef(blobs.put(photo_png(n)), "image/png")], answer=f"{ANSWER} {n}",
            finish_reason="stop", usage=None, latency_ms=1.0,
        ))
    journal.close()


def stats(url: str) -> dict:
    return httpx.get(url + "/memory/stats", timeout=10).json()


def scenario(name: str, upstream: Server, env: dict[str, str], backlog: Path | None, body: bytes, requests: int,
             concurrency: int) -> dict:
    data_dir = Path(tempfile.mkdtemp(prefix="visionrag-bench-chat-"))
    if backlog:
        shutil.copytree(backlog, data_dir, dirs_exist_ok=True)  # a fresh copy of the queued exchanges
    port = free_port()
    argv = [sys.executable, "-m", "uvicorn", "gateway.api.app:create_app", "--factory",
            "--port", str(port), "--no-access-log", "--log-level", "warning", "--loop", "uvloop",
            "--http", "httptools"]
    base_env = {"VISIONRAG_UPSTREAM_URLS": upstream.url + "/v1", "VISIONRAG_DATA_DIR": str(data_dir),
                "VISIONRAG_FASTEMBED_CACHE_DIR": str(FULL_CLIP), "VISIONRAG_EMBED_THREADS": "1",
                "HF_HUB_OFFLINE": "1"}
    # No core pinning: in production the worker thread and the event loop share whatever cores there are.
    log = open(data_dir.parent / f"{data_dir.name}.log", "wb")  # noqa: SIM115 - owned by the child
    process = subprocess.Popen(argv, cwd=ROOT, env={**os.environ, **base_env, **env}, start_new_session=True,
                               stdout=log, stderr=subprocess.STDOUT)
    gateway = Server(name, process, f"http://127.0.0.1:{port}")
    try:
        deadline = time.time() + 120
        while True:
            try:
                if httpx.get(gateway.url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.time() > deadline or process.poll() is not None:
                raise RuntimeError(f"gateway for {name} did not start; see {log.name}")
            time.sleep(0.2)
        memory_on = env.get("VISIONRAG_MEMORY_ENABLED", "true") != "false"
        if memory_on:
            while not stats(gateway.url)["embedder"]["loaded"]:  # CLIP loaded: the steady state
                time.sleep(0.2)
            if backlog:
                while stats(gateway.url)["worker"]["exchanges"] == 0:  # the worker is embedding
                    time.sleep(0.1)
        before = stats(gateway.url) if memory_on else None
        started = time.perf_counter()
        result = measure(process.pid, gateway.url + "/v1/chat/completions", body, False, concurrency, requests)
        result["seconds"] = time.perf_counter() - started
        if memory_on:
            after = stats(gateway.url)
            result["ingested_during"] = after["worker"]["exchanges"] - before["worker"]["exchanges"]
            result["backlog_after"] = after["backlog"]
            if backlog:
                assert after["backlog"] > 0, f"{name}: the backlog drained during the measurement; raise --backlog"
        Path(log.name).unlink()  # kept only when the scenario failed
        return result
    finally:
        if process.poll() is None:
            stop_process_group(process.pid, grace_s=30)
        log.close()
        shutil.rmtree(data_dir, ignore_errors=True)


def hog() -> None:
    """The ingest's CLIP work (images + texts, 1 thread, niced) in a separate process, forever."""
    from bench.memory_ingest import ANSWER, QUESTION, photo_png
    from gateway.memory.embed import ClipEmbedder

    os.nice(10)
    clip = ClipEmbedder(cache_dir=FULL_CLIP, threads=1, batch_size=16)
    clip.load()
    images = [photo_png(n) for n in range(16)]
    print("ready", flush=True)
    while True:
        clip.embed_images(images)
        clip.embed_texts([QUESTION] * 16 + [ANSWER] * 16)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=5000,
                        help="chats per row with the instant upstream: several seconds, several ingest batches")
    parser.add_argument("--slow-requests", type=int, default=400, help="chats per row with the slow upstream")
    parser.add_argument("--slow-upstream-ms", type=float, default=200.0,
                        help="model time of the slow upstream (a small VLM answer on a GPU)")
    parser.add_argument("--backlog", type=int, default=600, help="exchanges queued for the busy scenarios")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "memory_chat_under_ingest.json")
    parser.add_argument("--hog", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.hog:
        hog()
        return
    if not (FULL_CLIP / ".built").exists():
        raise SystemExit(f"{FULL_CLIP} is missing: run `make {FULL_CLIP.relative_to(ROOT)}/.built`")

    png = make_png()
    body = json.dumps({"model": "fake-vlm", "max_tokens": 32, "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64," + base64.b64encode(png).decode()}},
        {"type": "text", "text": "What does this diagram show?"}]}]}).encode()
    queued = Path(tempfile.mkdtemp(prefix="visionrag-bench-backlog-"))
    prefill(queued, args.backlog)
    off = {"VISIONRAG_MEMORY_ENABLED": "false"}
    # (name, gateway env, backlog to copy in, CLIP busy in another process)
    scenarios: list[tuple[str, dict[str, str], Path | None, bool]] = [
        ("memory off", off, None, False),
        ("ingest idle", {"VISIONRAG_INGEST_POLL_INTERVAL_S": "3600"}, None, False),
        ("ingest busy (nice 10, default)", {"VISIONRAG_INGEST_NICE": "10"}, queued, False),
        ("ingest busy, not niced", {"VISIONRAG_INGEST_NICE": "0"}, queued, False),
        ("control: memory off, same CLIP work in another process", off, None, True),
    ]
    # (upstream model time s, concurrency, requests)
    loads = [(0.0, 1, args.requests), (0.0, 8, args.requests), (args.slow_upstream_ms / 1000, 8, args.slow_requests)]
    rows = []
    try:
        for stall, concurrency, requests in loads:
            up_port = free_port()
            upstream = start("upstream", [sys.executable, "-m", "bench.fake_upstream", "--port", str(up_port),
                                          "--stall", str(stall)], up_port, core=1)
            try:
                for name, env, backlog, busy_elsewhere in scenarios:
                    other = None
                    if busy_elsewhere:
                        other = subprocess.Popen([sys.executable, "-m", "bench.memory_chat_under_ingest", "--hog"],
                                                 cwd=ROOT, stdout=subprocess.PIPE, start_new_session=True)
                        assert other.stdout is not None and other.stdout.readline().strip() == b"ready"
                    try:
                        result = scenario(name, upstream, env, backlog, body, requests, concurrency)
                    finally:
                        if other is not None:
                            os.killpg(other.pid, signal.SIGKILL)
                            other.wait()
                    rows.append({"scenario": name, "upstream_ms": stall * 1000, "concurrency": concurrency,
                                 "requests": requests, **result})
            finally:
                upstream.stop()
    finally:
        shutil.rmtree(queued, ignore_errors=True)

    versions = {p: version(p) for p in ("fastapi", "uvicorn", "fastembed", "onnxruntime", "qdrant-edge-py")}
    report = {"python": platform.python_version(), "cores": os.cpu_count(), "versions": versions,
              "png_bytes": len(png), "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"Non-streamed chats, {len(png)} B PNG each, fake upstream; {os.cpu_count()} cores; "
          + ", ".join(f"{k} {v}" for k, v in versions.items()))
    print("| upstream ms | conc. | requests | scenario | p50 ms | p99 ms | p99 vs ingest idle | req/s "
          "| gateway process CPU ms/req (incl. ingest) | ingested meanwhile |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for stall, concurrency, _ in loads:
        group = [r for r in rows if r["concurrency"] == concurrency and r["upstream_ms"] == stall * 1000]
        idle = next(r for r in group if r["scenario"] == "ingest idle")
        for r in group:
            print(f"| {r['upstream_ms']:.0f} | {concurrency} | {r['requests']} | {r['scenario']} | {r['p50_ms']:.2f} | "
                  f"{r['p99_ms']:.2f} | {r['p99_ms'] / idle['p99_ms']:.2f}x | {r['rps']:.0f} | "
                  f"{r['cpu_ms_per_request']:.2f} | {r.get('ingested_during', '-')} |")


if __name__ == "__main__":
    main()

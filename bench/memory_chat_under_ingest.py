"""Does ingest slow chats down? Chat latency through the gateway with the ingest worker idle vs busy.

    make bench-memory-chat        # or: .venv/bin/python -m bench.memory_chat_under_ingest

A fake OpenAI upstream (bench/fake_upstream.py, answers at once: the strictest case, the latency is
all gateway) and the real gateway process (uvicorn, memory on, full-size random-weight CLIP, 1
onnxruntime thread). Every chat carries a ~20 KB PNG data: URL. Scenarios, in one run:
- memory off: the gateway without memory (the reference the gateway-overhead bench measures);
- ingest idle: memory on, empty backlog, and the worker's poll interval set to an hour so the chats'
  own exchanges are not embedded during the measurement;
- ingest busy: memory on with a backlog of full-size exchanges queued before start, so the worker
  embeds without pause for the whole measurement (checked: the backlog is still non-empty at the end);
  with the ingest thread niced (the default, VISIONRAG_INGEST_NICE=10) and not niced (0).
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

ROOT = Path(__file__).resolve().parent.parent
FULL_CLIP = ROOT / "models" / "clip-full"


def prefill(data_dir: Path, count: int) -> None:
    from bench.memory_ingest import ANSWER, QUESTION, photo_png
    from gateway.journal import BlobStore, Exchange, ImageRef, Journal

    journal = Journal(data_dir / "journal.sqlite3")
    blobs = BlobStore(data_dir / "images")
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
    argv = [sys.executable, "-m", "uvicorn", "gateway.app:create_app", "--factory",
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
        return result
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
        log.close()
        shutil.rmtree(data_dir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=5000,
                        help="chats per row: enough for several seconds, so several ingest batches land")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--backlog", type=int, default=600, help="exchanges queued for the busy scenarios")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "memory_chat_under_ingest.json")
    args = parser.parse_args()
    if not (FULL_CLIP / ".built").exists():
        raise SystemExit(f"{FULL_CLIP} is missing: run `make {FULL_CLIP.relative_to(ROOT)}/.built`")

    png = make_png()
    body = json.dumps({"model": "fake-vlm", "max_tokens": 32, "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64," + base64.b64encode(png).decode()}},
        {"type": "text", "text": "What does this diagram show?"}]}]}).encode()
    up_port = free_port()
    upstream = start("upstream", [sys.executable, "-m", "bench.fake_upstream", "--port", str(up_port)],
                     up_port, core=1)
    queued = Path(tempfile.mkdtemp(prefix="visionrag-bench-backlog-"))
    prefill(queued, args.backlog)
    scenarios: list[tuple[str, dict[str, str], Path | None]] = [
        ("memory off", {"VISIONRAG_MEMORY_ENABLED": "false"}, None),
        ("ingest idle", {"VISIONRAG_INGEST_POLL_INTERVAL_S": "3600"}, None),
        ("ingest busy, niced", {"VISIONRAG_INGEST_NICE": "10"}, queued),
        ("ingest busy, not niced", {"VISIONRAG_INGEST_NICE": "0"}, queued),
    ]
    rows = []
    try:
        for concurrency in args.concurrency:
            for name, env, backlog in scenarios:
                result = scenario(name, upstream, env, backlog, body, args.requests, concurrency)
                rows.append({"scenario": name, "concurrency": concurrency, **result})
    finally:
        upstream.stop()
        shutil.rmtree(queued, ignore_errors=True)

    versions = {p: version(p) for p in ("fastapi", "uvicorn", "fastembed", "onnxruntime", "qdrant-edge-py")}
    report = {"python": platform.python_version(), "cores": os.cpu_count(), "versions": versions,
              "png_bytes": len(png), "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"{args.requests} non-streamed chats per row, {len(png)} B PNG each, instant fake upstream; "
          + ", ".join(f"{k} {v}" for k, v in versions.items()))
    print("| concurrency | scenario | p50 ms | p99 ms | p99 vs ingest idle | req/s "
          "| gateway process CPU ms/req (incl. ingest) | exchanges ingested meanwhile |")
    print("|---|---|---|---|---|---|---|---|")
    for concurrency in args.concurrency:
        idle = next(r for r in rows if r["concurrency"] == concurrency and r["scenario"] == "ingest idle")
        for r in (r for r in rows if r["concurrency"] == concurrency):
            print(f"| {concurrency} | {r['scenario']} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | "
                  f"{r['p99_ms'] / idle['p99_ms']:.2f}x | {r['rps']:.0f} | {r['cpu_ms_per_request']:.2f} | "
                  f"{r.get('ingested_during', '-')} |")


if __name__ == "__main__":
    main()

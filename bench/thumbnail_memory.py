"""Gateway memory while thumbnails of large stored images are made: 64 cold thumbnails, 16 at once.

    make bench-thumbnail-memory   # or: .venv/bin/python -m bench.thumbnail_memory [--old-rev REV]

The real gateway process (uvicorn, memory on, the tiny random-weight CLIP from models/clip-tiny, a
fake upstream from bench/fake_upstream.py) first stores 16 distinct 6000x6000 8-bit RGBA PNGs (the
largest 8-bit image the default limits accept: 144 MB decoded) through chats, and embeds them. Once
it is idle, 64 GET /images/{sha}?size= (each image at 64, 128, 256 and 512 px, queued image by image,
so an image's four sizes are asked for together) are sent 16 at a time; none is cached yet. Measured
from /proc/PID/status:
- idle: RSS with the images stored and embedded, before the load;
- peak: VmHWM over the thumbnail load (reset with clear_refs just before);
- after: RSS once the gateway has been idle for --idle-s.
The same run measures the gateway of --old-rev (a git worktree; default: the commit before thumbnails
were bounded), which decoded every original at full size, once per size, outside the decode budget.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

from bench.gateway_overhead import Server, free_port, old_worktree, start
from bench.image_memory import TINY_CLIP, data_url, make_images, proc_kb, stats, wait_loaded

ROOT = Path(__file__).resolve().parent.parent
SIZES = (64, 128, 256, 512)
BASELINE_REV = "805cbfe"


def launch(cwd: Path, upstream: Server, data_dir: Path, log: Path) -> Server:
    port = free_port()
    env = {"VISIONRAG_UPSTREAM_URLS": upstream.url + "/v1", "VISIONRAG_DATA_DIR": str(data_dir),
           "VISIONRAG_FASTEMBED_CACHE_DIR": str(TINY_CLIP), "VISIONRAG_EMBED_THREADS": "1",
           "VISIONRAG_MEMORY_ENABLED": "true", "HF_HUB_OFFLINE": "1"}
    argv = [sys.executable, "-m", "uvicorn", "gateway.api.app:create_app", "--factory", "--port", str(port),
            "--no-access-log", "--log-level", "warning"]
    with open(log, "wb") as out:
        process = subprocess.Popen(argv, cwd=cwd, env={**os.environ, **env}, start_new_session=True,
                                   stdout=out, stderr=subprocess.STDOUT)
    server = Server("gateway", process, f"http://127.0.0.1:{port}")
    try:
        wait_loaded(server.url, process, 120, f"the gateway in {cwd}; see {log}")
    except RuntimeError:
        server.stop()
        raise
    return server


async def store(url: str, images: list[bytes]) -> None:
    """One chat per image, 4 at a time (storing is not what is measured)."""
    limit = asyncio.Semaphore(4)
    async with httpx.AsyncClient(timeout=600) as client:
        async def chat(png: bytes) -> None:
            async with limit:
                response = await client.post(url + "/v1/chat/completions", json={
                    "model": "fake-vlm", "max_tokens": 4, "messages": [{"role": "user", "content": [
                        {"type": "image_url", "image_url": {"url": data_url(png)}},
                        {"type": "text", "text": "What does this show?"}]}]})
                response.raise_for_status()

        await asyncio.gather(*(chat(png) for png in images))


async def thumbnails(url: str, shas: list[str], concurrency: int) -> tuple[dict[int, int], list[float]]:
    """Every (image, size) once, `concurrency` in flight; status codes and latencies."""
    queue = iter([(sha, size) for sha in shas for size in SIZES])
    codes: dict[int, int] = {}
    latencies: list[float] = []
    async with httpx.AsyncClient(timeout=600, limits=httpx.Limits(max_connections=None)) as client:
        async def worker() -> None:
            for sha, size in queue:
                started = time.perf_counter()
                response = await client.get(f"{url}/images/{sha}", params={"size": size})
                latencies.append(time.perf_counter() - started)
                codes[response.status_code] = codes.get(response.status_code, 0) + 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return codes, latencies


def run_scenario(variant: str, cwd: Path, upstream: Server, images: list[bytes], args: argparse.Namespace) -> dict:
    data_dir = Path(tempfile.mkdtemp(prefix="visionrag-bench-thumbs-"))
    log = data_dir.parent / f"{data_dir.name}.log"
    gateway = launch(cwd, upstream, data_dir, log)
    pid = gateway.process.pid
    try:
        asyncio.run(store(gateway.url, images))
        deadline = time.time() + 900
        while (now := stats(gateway.url))["backlog"] or now["worker"]["exchanges"] < len(images):
            if time.time() > deadline:
                raise RuntimeError(f"{variant}: the images were not embedded in time")
            time.sleep(0.2)
        time.sleep(args.idle_s)
        idle_kb = proc_kb(pid, "VmRSS")
        Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM := current RSS

        samples: list[tuple[float, int]] = []
        stop = threading.Event()
        started = time.perf_counter()

        def sample() -> None:
            while not stop.wait(0.05):
                samples.append((time.perf_counter() - started, proc_kb(pid, "VmRSS")))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        shas = [hashlib.sha256(png).hexdigest() for png in images]
        codes, latencies = asyncio.run(thumbnails(gateway.url, shas, args.concurrency))
        answered_s = time.perf_counter() - started
        peak_kb = proc_kb(pid, "VmHWM")
        time.sleep(args.idle_s)
        stop.set()
        sampler.join()
        after_kb = proc_kb(pid, "VmRSS")
        log.unlink()  # kept only when the scenario failed
        latencies.sort()
        return {
            "variant": variant, "codes": codes, "idle_mb": idle_kb / 1024, "peak_mb": peak_kb / 1024,
            "after_idle_mb": after_kb / 1024, "answered_s": answered_s,
            "p50_ms": statistics.median(latencies) * 1000, "max_ms": latencies[-1] * 1000,
            "rss_samples_mb": [(round(t, 2), round(kb / 1024)) for t, kb in samples[::4]],
        }
    finally:
        gateway.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=16, help="distinct stored images (x4 sizes each)")
    parser.add_argument("--concurrency", type=int, default=16, help="thumbnail requests in flight at once")
    parser.add_argument("--idle-s", type=float, default=3.0, help="idle time before the idle and after-idle RSS")
    parser.add_argument("--old-rev", default=BASELINE_REV, help="the baseline gateway's commit (measured too)")
    parser.add_argument("--no-baseline", action="store_true", help="measure this checkout only")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "thumbnail_memory.json")
    args = parser.parse_args()
    if not (TINY_CLIP / ".built").exists():
        raise SystemExit(f"{TINY_CLIP} is missing: run `make memory-test-deps`")

    images = make_images("rgba8-36mpx", args.images)
    old_tree = None if args.no_baseline else old_worktree(args.old_rev)
    plan = [("this checkout", ROOT)] + ([(f"old ({args.old_rev})", old_tree)] if old_tree else [])
    up_port = free_port()
    upstream = start("upstream", [sys.executable, "-m", "bench.fake_upstream", "--port", str(up_port)], up_port,
                     core=None)
    rows = []
    try:
        for variant, cwd in plan:
            row = run_scenario(variant, cwd, upstream, images, args)
            print(f"{variant}: peak {row['peak_mb']:.0f} MB, after {row['after_idle_mb']:.0f} MB",
                  file=sys.stderr, flush=True)
            rows.append(row)
    finally:
        upstream.stop()
        if old_tree:
            subprocess.run(["git", "worktree", "remove", "--force", str(old_tree)], cwd=ROOT, check=False)

    from importlib.metadata import version

    report = {"python": platform.python_version(), "cores": os.cpu_count(), "pillow": version("pillow"),
              "images": args.images, "concurrency": args.concurrency, "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"{args.images} stored 6000x6000 8-bit RGBA PNGs x sizes {'/'.join(map(str, SIZES))}, cold, "
          f"{args.concurrency} at once; tiny CLIP, fake upstream, default limits; {os.cpu_count()} cores, "
          f"Pillow {report['pillow']}")
    print("| gateway | thumbnails | RSS idle MB | peak MB | after idle MB | all answered s | p50 ms | max ms |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        codes = ", ".join(f"{n}x{c}" for c, n in sorted(r["codes"].items()))
        print(f"| {r['variant']} | {codes} | {r['idle_mb']:.0f} | {r['peak_mb']:.0f} | {r['after_idle_mb']:.0f} | "
              f"{r['answered_s']:.1f} | {r['p50_ms']:.0f} | {r['max_ms']:.0f} |")


if __name__ == "__main__":
    main()

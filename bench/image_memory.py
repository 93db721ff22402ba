"""Gateway memory under hostile images: 16 searches-by-image and 16 chats at once, then idle.

    make bench-image-memory       # or: .venv/bin/python -m bench.image_memory [--old-rev REV]

The real gateway process (uvicorn, memory on, the tiny random-weight CLIP from models/clip-tiny, a
fake upstream from bench/fake_upstream.py) receives 16 concurrent POST /search with an image and 16
concurrent chats with one, all 32 in flight together, each image distinct (so the ingest worker
cannot share one decode). The chats' exchanges are then embedded by the ingest worker, whose batch
of 16 is where a full-resolution decode per image added up. Measured from /proc/PID/status:
- idle: RSS once CLIP is loaded, before the load;
- peak: VmHWM over the load and the ingest of the chats (reset with clear_refs just before);
- after: RSS once the backlog is empty and the gateway has been idle for --idle-s.
Images, each also with ordinary small PNGs as the baseline in the same run:
- a 6000x6000 8-bit RGBA PNG: the most memory the default limits let one image cost Pillow (144 MB
  decoded, an RGB copy on top);
- a 4242x4242 16-bit RGBA PNG: the largest square 16-bit RGBA under VISIONRAG_MAX_IMAGE_DECODED_BYTES;
- the 6000x6000 16-bit RGBA PNG of issue 7 (~280 KB on the wire, 288 MB decoded): refused now.
Variants: this checkout; the same without the malloc settings (glibc's dynamic mmap threshold, no
trim), to show what those are worth; and with --old-rev, the gateway of an earlier commit (a git
worktree), which decoded every image at full size with no budget.
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
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from pathlib import Path

import httpx
from PIL import Image

from bench.gateway_overhead import Server, free_port, make_png, old_worktree, start
from gateway.images.raster import decoded_bytes
from serving.stack import stop_process_group

ROOT = Path(__file__).resolve().parent.parent
TINY_CLIP = ROOT / "models" / "clip-tiny"
CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}


def deep_png(width: int, height: int, depth: int, color_type: int, tag: int) -> bytes:
    """A flat PNG Pillow cannot write (16-bit samples), made distinct by a tEXt chunk."""
    row = b"\x00" + bytes(width * CHANNELS[color_type] * depth // 8)
    packer = zlib.compressobj(9)
    idat = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    header = struct.pack(">IIBBBBB", width, height, depth, color_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"tEXt", b"Comment\x00%d" % tag)
            + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


# RGBA PNGs: (width, height, bits per sample)
DEEP = {"rgba8-36mpx": (6000, 6000, 8), "rgba16-18mpx": (4242, 4242, 16), "rgba16-36mpx": (6000, 6000, 16)}


def make_images(kind: str, count: int) -> list[bytes]:
    if kind == "small":
        return [make_png(20_000, seed=n) for n in range(count)]
    width, height, depth = DEEP[kind]
    return [deep_png(width, height, depth, 6, n) for n in range(count)]


def proc_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


async def fire(url: str, images: list[bytes], concurrency: int) -> dict[str, dict[int, int]]:
    """`concurrency` searches and as many chats, all in flight at once; status codes by route."""
    searches, chats = images[:concurrency], images[concurrency:]
    codes: dict[str, dict[int, int]] = {"search": {}, "chat": {}}
    async with httpx.AsyncClient(timeout=600, limits=httpx.Limits(max_connections=None)) as client:
        async def post(route: str, path: str, body: dict) -> None:
            response = await client.post(url + path, json=body)
            codes[route][response.status_code] = codes[route].get(response.status_code, 0) + 1

        await asyncio.gather(
            *(post("search", "/search", {"image": data_url(png), "limit": 5}) for png in searches),
            *(post("chat", "/v1/chat/completions", {"model": "fake-vlm", "max_tokens": 16, "messages": [
                {"role": "user", "content": [{"type": "image_url", "image_url": {"url": data_url(png)}},
                                             {"type": "text", "text": "What does this show?"}]}]})
              for png in chats),
        )
    return codes


def stats(url: str) -> dict:
    return httpx.get(url + "/memory/stats", timeout=30).json()


def wait_loaded(url: str, process: subprocess.Popen, timeout_s: float, what: str) -> None:
    """Until the gateway at `url` is healthy and has loaded CLIP; RuntimeError saying `what` (where its
    log is) if it exits or the time runs out."""
    deadline = time.time() + timeout_s
    while True:
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200 and stats(url)["embedder"]["loaded"]:
                return
        except (httpx.HTTPError, KeyError):
            pass
        if time.time() > deadline or process.poll() is not None:
            raise RuntimeError(f"{what} did not start")
        time.sleep(0.2)


def run_scenario(variant: str, kind: str, upstream: Server, args: argparse.Namespace,
                 old_tree: Path | None) -> dict:
    data_dir = Path(tempfile.mkdtemp(prefix="visionrag-bench-imgmem-"))
    port = free_port()
    if variant == "glibc malloc defaults":
        argv = [sys.executable, "-m", "bench.image_memory", "--serve-glibc-defaults", str(port)]
    else:
        argv = [sys.executable, "-m", "uvicorn", "gateway.api.app:create_app", "--factory", "--port", str(port),
                "--no-access-log", "--log-level", "warning"]
    env = {**os.environ, "VISIONRAG_UPSTREAM_URLS": upstream.url + "/v1", "VISIONRAG_DATA_DIR": str(data_dir),
           "VISIONRAG_FASTEMBED_CACHE_DIR": str(TINY_CLIP), "VISIONRAG_EMBED_THREADS": "1",
           "VISIONRAG_MEMORY_ENABLED": "true", "HF_HUB_OFFLINE": "1"}
    cwd = old_tree if variant.startswith("old") else ROOT
    images = make_images(kind, 2 * args.concurrency)
    log = open(data_dir.parent / f"{data_dir.name}.log", "wb")  # noqa: SIM115 - owned by the child
    process = subprocess.Popen(argv, cwd=cwd, env=env, start_new_session=True, stdout=log,
                               stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_loaded(url, process, 120, f"gateway ({variant}); see {log.name}")
        time.sleep(1)
        idle_kb = proc_kb(process.pid, "VmRSS")
        ingested_before = stats(url)["worker"]["exchanges"]
        Path(f"/proc/{process.pid}/clear_refs").write_text("5")  # VmHWM := current RSS

        samples: list[tuple[float, int]] = []
        stop = threading.Event()
        started = time.perf_counter()

        def sample() -> None:
            while not stop.wait(0.05):
                samples.append((time.perf_counter() - started, proc_kb(process.pid, "VmRSS")))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        codes = asyncio.run(fire(url, images, args.concurrency))
        answered_s = time.perf_counter() - started
        accepted_chats = codes["chat"].get(200, 0)
        while True:  # the chats' exchanges embedded: the worker's share of the load
            now = stats(url)
            if now["backlog"] == 0 and now["worker"]["exchanges"] - ingested_before >= accepted_chats:
                break
            if time.perf_counter() - started > 900:
                raise RuntimeError(f"{variant}/{kind}: ingest did not finish")
            time.sleep(0.2)
        drained_s = time.perf_counter() - started
        peak_kb = proc_kb(process.pid, "VmHWM")
        time.sleep(args.idle_s)
        stop.set()
        sampler.join()
        after_kb = proc_kb(process.pid, "VmRSS")
        Path(log.name).unlink()  # kept only when the scenario failed
        return {
            "variant": variant, "image": kind, "image_bytes": len(images[0]),
            "decoded_mb": decoded_bytes(Image.open(io.BytesIO(images[0]))) / 1e6,
            "search_codes": codes["search"], "chat_codes": codes["chat"],
            "idle_mb": idle_kb / 1024, "peak_mb": peak_kb / 1024, "after_idle_mb": after_kb / 1024,
            "answered_s": answered_s, "ingested_s": drained_s,
            "rss_samples_mb": [(round(t, 2), round(kb / 1024)) for t, kb in samples[::4]],
        }
    finally:
        if process.poll() is None:
            stop_process_group(process.pid, grace_s=30)
        log.close()
        shutil.rmtree(data_dir, ignore_errors=True)


def serve_glibc_defaults(port: int) -> None:
    """The gateway of this checkout with glibc's own malloc behaviour (no fixed mmap threshold, no trim)."""
    import uvicorn

    from gateway.images import heap

    heap.mmap_large_blocks = lambda *args, **kwargs: None  # type: ignore[assignment]
    heap.trim = lambda: None  # type: ignore[assignment]
    uvicorn.run("gateway.api.app:create_app", factory=True, host="127.0.0.1", port=port, log_level="warning",
                access_log=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--concurrency", type=int, default=16, help="searches, and as many chats, at once")
    parser.add_argument("--idle-s", type=float, default=5.0, help="idle time before the after-idle RSS")
    parser.add_argument("--images", default="small,rgba8-36mpx,rgba16-18mpx,rgba16-36mpx")
    parser.add_argument("--old-rev", help="also measure the gateway of this commit (e.g. before the limits)")
    parser.add_argument("--old-images", default="small,rgba16-36mpx", help="images for the --old-rev gateway")
    parser.add_argument("--no-glibc-variant", action="store_true", help="skip the glibc malloc defaults rows")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "image_memory.json")
    parser.add_argument("--serve-glibc-defaults", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_glibc_defaults:
        serve_glibc_defaults(args.serve_glibc_defaults)
        return
    if not (TINY_CLIP / ".built").exists():
        raise SystemExit(f"{TINY_CLIP} is missing: run `make memory-test-deps`")

    plan = [("this checkout", k) for k in args.images.split(",")]
    if not args.no_glibc_variant:
        plan += [("glibc malloc defaults", k) for k in args.images.split(",") if k != "rgba16-36mpx"]
    old_tree = old_worktree(args.old_rev) if args.old_rev else None
    if old_tree:
        plan += [(f"old ({args.old_rev})", k) for k in args.old_images.split(",")]
    up_port = free_port()
    upstream = start("upstream", [sys.executable, "-m", "bench.fake_upstream", "--port", str(up_port)], up_port,
                     core=1)
    rows = []
    try:
        for variant, kind in plan:
            row = run_scenario(variant, kind, upstream, args, old_tree)
            print(f"{variant} / {kind}: peak {row['peak_mb']:.0f} MB, after {row['after_idle_mb']:.0f} MB",
                  file=sys.stderr, flush=True)
            rows.append(row)
    finally:
        upstream.stop()
        if old_tree:
            subprocess.run(["git", "worktree", "remove", "--force", str(old_tree)], cwd=ROOT, check=False)

    from importlib.metadata import version

    settings = {k: v for k, v in os.environ.items() if k.startswith("VISIONRAG_")}
    report = {"python": platform.python_version(), "cores": os.cpu_count(), "pillow": version("pillow"),
              "concurrency": args.concurrency, "env": settings, "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"{args.concurrency} searches-by-image + {args.concurrency} chats at once, distinct images, "
          f"then their ingest; tiny CLIP, fake upstream, default limits; {os.cpu_count()} cores, "
          f"Pillow {report['pillow']}")
    print("| gateway | image | file KB | decoded MB | /search | chats | RSS idle MB | peak MB | after idle MB "
          "| answered s | ingested s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        codes = [", ".join(f"{n}x{c}" for c, n in sorted(r[k].items())) for k in ("search_codes", "chat_codes")]
        print(f"| {r['variant']} | {r['image']} | {r['image_bytes'] / 1024:.0f} | {r['decoded_mb']:.1f} | "
              f"{codes[0]} | {codes[1]} | {r['idle_mb']:.0f} | {r['peak_mb']:.0f} | {r['after_idle_mb']:.0f} | "
              f"{r['answered_s']:.1f} | {r['ingested_s']:.1f} |")


if __name__ == "__main__":
    main()

"""What the gateway costs: CPU per request and added latency, against the same upstream called directly.

    make bench-gateway            # or: .venv/bin/python -m bench.gateway_overhead

One run starts a fake OpenAI upstream, a bare aiohttp pass-through proxy (the floor), and the
gateway (journal on, memory off), each in its own process. The gateway and the bare proxy are
pinned to core 0; the upstream and the load generator share core 1. Every request carries a
~20 KB PNG as a data: URL and a question. CPU per request is read from /proc for the measured
process; added latency is its p50/p99 minus the direct call's, measured in the same run.

With `--postgres` a third gateway runs beside them with its journal on a PostgreSQL server of its own
(tests.plugins.postgres, PostgreSQL's default durability, the server on core 1, so that the gateway's
CPU is its own work only): the shared-state journal against SQLite, in the same rounds.

With `--old-rev REV` (`make bench-gateway OLD_REV=...`) the gateway of that commit (a git worktree, the
same venv) runs beside today's, also pinned to core 0, measured in the same interleaved rounds: a
before/after of a change on the same noisy box.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import io
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import aiohttp
import numpy as np
from PIL import Image

from tests.plugins.postgres import running_postgres

ROOT = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")


def make_png(target_bytes: int = 20_000, seed: int = 0) -> bytes:
    """A PNG of about `target_bytes`: smooth gradients plus some noise, like a screenshot."""
    rng = np.random.default_rng(seed)
    side = 48
    while True:
        y, x = np.mgrid[0:side, 0:side]
        base = np.stack([(x * 255 // side), (y * 255 // side), ((x + y) * 127 // side)], axis=-1)
        noise = rng.integers(0, 16, size=(side, side, 3))
        pixels = ((base + noise) % 256).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(pixels).save(buf, "PNG")
        if buf.tell() >= target_bytes or side > 1024:
            return buf.getvalue()
        side += 8


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


def old_worktree(rev: str) -> Path:
    """A checkout of `rev` beside this one (remove it with `git worktree remove`), importing its own gateway."""
    tree = Path(tempfile.mkdtemp(prefix="visionrag-bench-old-"))
    subprocess.run(["git", "worktree", "add", "--detach", str(tree), rev], cwd=ROOT, check=True,
                   capture_output=True)
    found = subprocess.run([sys.executable, "-c", "import gateway; print(gateway.__file__)"], cwd=tree,
                           capture_output=True, text=True, check=True).stdout.strip()
    assert found.startswith(str(tree)), f"the old gateway would be imported from {found}"
    return tree


@dataclass
class Server:
    name: str
    process: subprocess.Popen
    url: str

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)


def start(name: str, argv: list[str], port: int, core: int | None, env: dict[str, str] | None = None,
          cwd: Path = ROOT) -> Server:
    """Start a server in its own process group, pinned to `core` (None: not pinned), once it listens."""
    pinned = core is not None and (os.cpu_count() or 1) > 1
    cmd = ["taskset", "-c", str(core), *argv] if pinned else argv
    process = subprocess.Popen(cmd, cwd=cwd, env={**os.environ, **(env or {})}, start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return Server(name, process, f"http://127.0.0.1:{port}")
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"{name} did not start on port {port}")


async def run_load(url: str, body: bytes, stream: bool, concurrency: int, total: int) -> list[float]:
    latencies: list[float] = []
    queue = iter(range(total))
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        async def worker() -> None:
            for _ in queue:
                started = time.perf_counter()
                async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as r:
                    if stream:
                        async for _chunk in r.content.iter_any():
                            pass
                    else:
                        await r.read()
                    if r.status != 200:
                        raise RuntimeError(f"{url}: HTTP {r.status}")
                latencies.append(time.perf_counter() - started)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies


def measure(server_pid: int | None, url: str, body: bytes, stream: bool, concurrency: int,
            total: int) -> dict:
    asyncio.run(run_load(url, body, stream, concurrency, max(20, total // 10)))  # warm-up
    before = cpu_seconds(server_pid) if server_pid else 0.0
    started = time.perf_counter()
    latencies = asyncio.run(run_load(url, body, stream, concurrency, total))
    elapsed = time.perf_counter() - started
    cpu = (cpu_seconds(server_pid) - before) if server_pid else 0.0
    latencies.sort()
    return {
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1000,
        "rps": total / elapsed,
        "cpu_ms_per_request": cpu / total * 1000,
    }


def median_of(results: list[dict]) -> dict:
    return {key: statistics.median(r[key] for r in results) for key in results[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=600, help="requests per scenario (concurrency 32 uses 2x)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="interleaved rounds per scenario; medians are reported (this box is noisy)")
    parser.add_argument("--chunks", type=int, default=32, help="content chunks per streamed answer")
    parser.add_argument("--old-rev", help="also measure the gateway of this commit, in the same rounds")
    parser.add_argument("--postgres", action="store_true",
                        help="also measure a gateway whose journal is on PostgreSQL, in the same rounds")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "gateway_overhead.json")
    args = parser.parse_args()

    png = make_png()
    data_url = "data:image/png;base64," + base64.b64encode(png).decode()
    python = sys.executable
    up_port, bare_port, gw_port = free_port(), free_port(), free_port()
    data_dir = tempfile.mkdtemp(prefix="visionrag-bench-")
    servers = []
    old_tree = old_worktree(args.old_rev) if args.old_rev else None
    gateways: dict[str, Server] = {}
    postgres_server = running_postgres(core=1) if args.postgres else contextlib.nullcontext()
    with postgres_server as postgres:
        try:
            upstream = start("upstream", [python, "-m", "bench.fake_upstream", "--port", str(up_port),
                                          "--chunks", str(args.chunks)], up_port, core=1)
            servers.append(upstream)
            bare = start("bare", [python, "-m", "bench.bare_proxy", "--port", str(bare_port),
                                  "--upstream", upstream.url], bare_port, core=0)
            servers.append(bare)
            # Each gateway: its source tree, and settings beside the common ones.
            variants = [("gateway", ROOT, {})]
            if old_tree:
                variants.append(("gateway_old", old_tree, {}))
            if postgres is not None:
                variants.append(("gateway_pg", ROOT, {"VISIONRAG_DATABASE_URL": postgres.url()}))
            for name, tree, extra in variants:
                port = gw_port if name == "gateway" else free_port()
                # Revisions before the HTTP edge moved to gateway/api/ had their factory in gateway/app.py.
                factory = "gateway.api.app:create_app" if (tree / "gateway/api/app.py").exists() else "gateway.app:create_app"
                gateways[name] = start(name, [python, "-m", "uvicorn", factory, "--factory",
                                              "--port", str(port), "--no-access-log", "--log-level", "warning",
                                              "--loop", "uvloop", "--http", "httptools"],
                                       port, core=0, cwd=tree,
                                       env={"VISIONRAG_UPSTREAM_URLS": upstream.url + "/v1",
                                            "VISIONRAG_DATA_DIR": tempfile.mkdtemp(dir=data_dir),
                                            "VISIONRAG_MEMORY_ENABLED": "false", **extra})
                servers.append(gateways[name])

            rows = []
            for stream in (False, True):
                payload = {"model": "fake-vlm", "max_tokens": 32, "stream": stream, "messages": [{
                    "role": "user", "content": [{"type": "image_url", "image_url": {"url": data_url}},
                                                {"type": "text", "text": "What does this diagram show?"}]}]}
                body = json.dumps(payload).encode()
                for concurrency in (1, 32):
                    total = args.requests * (2 if concurrency > 1 else 1)
                    rounds: dict[str, list[dict]] = {"direct": [], "bare": []} | {name: [] for name in gateways}
                    # Interleaved, so a noisy neighbour hits the baseline and the gateway alike.
                    for _ in range(args.rounds):
                        rounds["direct"].append(measure(None, upstream.url + "/v1/chat/completions", body, stream,
                                                        concurrency, total))
                        for name, server in [("bare", bare), *gateways.items()]:
                            rounds[name].append(measure(server.process.pid, server.url + "/v1/chat/completions", body,
                                                        stream, concurrency, total))
                    row = {"mode": "stream" if stream else "non-stream", "concurrency": concurrency,
                           "direct": median_of(rounds["direct"]), "bare_proxy": median_of(rounds["bare"])}
                    rows.append(row | {name: median_of(rounds[name]) for name in gateways})
        finally:
            for server in reversed(servers):
                server.stop()
            if old_tree:
                subprocess.run(["git", "worktree", "remove", "--force", str(old_tree)], cwd=ROOT, check=False)

    versions = {p: version(p) for p in ("fastapi", "starlette", "uvicorn", "aiohttp", "orjson", "pillow")}
    report = {"png_bytes": len(png), "chunks": args.chunks, "rounds": args.rounds, "old_rev": args.old_rev,
              "python": platform.python_version(),
              "versions": versions, "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"PNG {len(png)} bytes as a data: URL; stream = {args.chunks} chunks; medians of {args.rounds} rounds; "
          + ", ".join(f"{k} {v}" for k, v in versions.items()))
    print("| mode | conc. | gateway CPU ms/req | bare proxy CPU ms/req | ratio | direct p50 / p99 ms "
          "| gateway p50 / p99 ms | added p50 / p99 ms |")
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        d, b, g = row["direct"], row["bare_proxy"], row["gateway"]
        print(f"| {row['mode']} | {row['concurrency']} | {g['cpu_ms_per_request']:.2f} | "
              f"{b['cpu_ms_per_request']:.2f} | {g['cpu_ms_per_request'] / b['cpu_ms_per_request']:.2f}x | "
              f"{d['p50_ms']:.2f} / {d['p99_ms']:.2f} | {g['p50_ms']:.2f} / {g['p99_ms']:.2f} | "
              f"{g['p50_ms'] - d['p50_ms']:.2f} / {g['p99_ms'] - d['p99_ms']:.2f} |")
    if args.postgres:
        print("\nthe gateway with its journal on PostgreSQL, in the same rounds:")
        print("| mode | conc. | CPU ms/req SQLite / PostgreSQL | difference | added p50 ms SQLite / PostgreSQL "
              "| added p99 ms SQLite / PostgreSQL |")
        print("|---|---|---|---|---|---|")
        for row in rows:
            d, lite, pg = row["direct"], row["gateway"], row["gateway_pg"]
            print(f"| {row['mode']} | {row['concurrency']} | {lite['cpu_ms_per_request']:.3f} / "
                  f"{pg['cpu_ms_per_request']:.3f} | {pg['cpu_ms_per_request'] - lite['cpu_ms_per_request']:+.3f} | "
                  f"{lite['p50_ms'] - d['p50_ms']:.2f} / {pg['p50_ms'] - d['p50_ms']:.2f} | "
                  f"{lite['p99_ms'] - d['p99_ms']:.2f} / {pg['p99_ms'] - d['p99_ms']:.2f} |")
    if args.old_rev:
        print(f"\nthe gateway at {args.old_rev} in the same rounds:")
        print("| mode | conc. | CPU ms/req then / now | added p50 ms then / now | added p99 ms then / now |")
        print("|---|---|---|---|---|")
        for row in rows:
            d, old, new = row["direct"], row["gateway_old"], row["gateway"]
            print(f"| {row['mode']} | {row['concurrency']} | {old['cpu_ms_per_request']:.2f} / "
                  f"{new['cpu_ms_per_request']:.2f} | {old['p50_ms'] - d['p50_ms']:.2f} / "
                  f"{new['p50_ms'] - d['p50_ms']:.2f} | {old['p99_ms'] - d['p99_ms']:.2f} / "
                  f"{new['p99_ms'] - d['p99_ms']:.2f} |")


if __name__ == "__main__":
    main()

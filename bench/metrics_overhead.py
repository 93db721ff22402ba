"""What metrics and log context cost per request, in CPU, against the same work without them.

    make bench-metrics            # or: .venv/bin/python -m bench.metrics_overhead

The end-to-end gateway benchmark (bench.gateway_overhead) cannot resolve a few microseconds on a
shared box, so this one measures the added pieces directly, each against its baseline in the same
run, on one thread: the ASGI middleware around a minimal app (a JSON answer, and a 32-chunk event
stream), and the calls a recorded chat adds (upstream time to headers, the journal append's timer,
binding tenant and exchange id for the logs). Medians of interleaved rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gateway import logs, metrics

ROOT = Path(__file__).resolve().parent.parent


class _Route:
    path = "/v1/chat/completions"


ROUTE = _Route()
JSON_HEADERS = [(b"content-type", b"application/json"), (b"content-length", b"64")]
SSE_HEADERS = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]


def asgi_app(chunks: int) -> Callable[..., Any]:
    """The router's part (the matched route in the scope), then a response: 0 chunks = one JSON body."""

    async def app(scope: dict, receive: Any, send: Any) -> None:
        scope["route"] = ROUTE
        await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS if chunks else JSON_HEADERS})
        for _ in range(chunks):
            await send({"type": "http.response.body", "body": b"data: {}\n\n", "more_body": True})
        await send({"type": "http.response.body", "body": b"" if chunks else b"{}" * 32})

    return app


async def _send(message: dict) -> None:
    pass


async def _receive() -> dict:
    return {"type": "http.request", "body": b""}


async def asgi_us(app: Callable[..., Any], n: int) -> float:
    started = time.process_time()
    for _ in range(n):
        await app({"type": "http", "method": "POST", "path": "/v1/chat/completions"}, _receive, _send)
    return (time.process_time() - started) / n * 1e6


def calls_us(n: int) -> float:
    """What a recorded chat adds outside the middleware."""
    timed = metrics.JOURNAL_APPEND_SECONDS.time()(lambda: None)
    started = time.process_time()
    for _ in range(n):
        metrics.UPSTREAM_TTFB.labels("/chat/completions").observe(0.01)
        timed()
        logs.bind(tenant="acme")
        logs.bind(exchange_id="0123456789abcdef")
        metrics.recorded("complete")
    return (time.process_time() - started) / n * 1e6


def baseline_calls_us(n: int) -> float:
    plain = lambda: None  # the undecorated append
    started = time.process_time()
    for _ in range(n):
        plain()
    return (time.process_time() - started) / n * 1e6


async def measure(n: int, chunks: int) -> dict[str, float]:
    plain_json, plain_sse = asgi_app(0), asgi_app(chunks)
    counted_json, counted_sse = metrics.MetricsMiddleware(plain_json), metrics.MetricsMiddleware(plain_sse)
    return {
        "json_bare_us": await asgi_us(plain_json, n),
        "json_counted_us": await asgi_us(counted_json, n),
        "stream_bare_us": await asgi_us(plain_sse, n // 4),
        "stream_counted_us": await asgi_us(counted_sse, n // 4),
        "calls_bare_us": baseline_calls_us(n),
        "calls_us": calls_us(n),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=40_000, help="iterations per measurement and round")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds; medians are reported")
    parser.add_argument("--chunks", type=int, default=32, help="chunks per streamed answer")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "metrics_overhead.json")
    args = parser.parse_args()

    rounds = [asyncio.run(measure(args.requests, args.chunks)) for _ in range(args.rounds)]
    result = {key: statistics.median(r[key] for r in rounds) for key in rounds[0]}
    rows = [
        ("middleware, JSON answer", result["json_bare_us"], result["json_counted_us"]),
        (f"middleware, {args.chunks}-chunk stream", result["stream_bare_us"], result["stream_counted_us"]),
        ("a recorded chat's calls (TTFB, journal timer, 2 binds, recorded)", result["calls_bare_us"],
         result["calls_us"]),
    ]
    print(f"CPU µs per request, medians of {args.rounds} rounds of {args.requests}")
    print("| what | without | with | added µs |\n|---|---|---|---|")
    for what, bare, counted in rows:
        print(f"| {what} | {bare:.2f} | {counted:.2f} | {counted - bare:.2f} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"rounds": rounds, "median": result}, indent=2))


if __name__ == "__main__":
    main()

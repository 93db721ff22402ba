"""Every Prometheus metric the gateway exposes, and the ASGI middleware that counts requests.

A leaf module: it imports nothing of the gateway, so the journal, the images and the memory path can
each count their own work with a line or two (`metrics.X.observe(...)`) without learning of the app.

Instruments are module-level, in this module's own `REGISTRY` (not prometheus_client's global one):
- module-level, because the code that does the work (journal append, image loading, ingest) sits
  below the app and is shared by the CLI; a registry per app would have to be handed down through
  every constructor for a one-line count. One process is one scrape target, so its totals are the
  process's, whichever app (in tests, several) did the work; in-process tests read differences.
- a registry of our own, so that libraries registering in the global one neither leak into
  `/metrics` nor collide with these names.
What is per app (its upstream replicas, its journal's backlog) is not stored here: `Scrape` reads it
from that app's objects when `/metrics` is asked (see gateway.api.operations).
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from contextvars import ContextVar
from typing import Any, ParamSpec, TypeVar

from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector, disable_created_metrics
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder

# No `*_created` series: a timestamp per labelled series doubles the exposition, and the process's start
# time (process_start_time_seconds) already tells when the counters began.
disable_created_metrics()
REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)  # process_resident_memory_bytes, process_cpu_seconds_total, ...

# Seconds. From sub-millisecond gateway work to the upstream's read timeout (300 s by default).
_LATENCY = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
_FAST = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1)
_MODEL = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

# --- HTTP (MetricsMiddleware) -------------------------------------------------------------------------
# No method label: each route has one method, and a client could invent methods without end.
HTTP_REQUESTS = Counter(
    "visionrag_http_requests", "Requests answered, by route template (`unmatched`: no route) and status.",
    ["route", "status"], registry=REGISTRY)
HTTP_SECONDS = Histogram(
    "visionrag_http_request_duration_seconds",
    "From the request's arrival until the gateway starts its response (status and headers sent). For a "
    "non-streamed answer the body follows at once; for a stream this is its time to the first byte.",
    ["route"], buckets=_LATENCY, registry=REGISTRY)

# --- upstream (proxy.upstream) --------------------------------------------------------------------------
UPSTREAM_TTFB = Histogram(
    "visionrag_upstream_ttfb_seconds",
    "From sending a request to the upstream until its response headers arrive (a non-streamed answer: "
    "the whole generation; a stream: until it starts), by upstream path.",
    ["path"], buckets=_LATENCY, registry=REGISTRY)

# --- streams (MetricsMiddleware at the start, proxy.recorder at the end) ---------------------------------
STREAMS_STARTED = Counter(
    "visionrag_streams_started", "Event streams the gateway started relaying, by route.",
    ["route"], registry=REGISTRY)
STREAMS_ENDED = Counter(
    "visionrag_streams_ended",
    "Event streams recorded in the journal, by route and status: `complete`, or `incomplete` (the client "
    "went away or the upstream broke off). Started minus ended is the number in flight.",
    ["route", "status"], registry=REGISTRY)

# --- images (images.loader) --------------------------------------------------------------------------------
IMAGES_REFUSED = Counter(
    "visionrag_images_refused", "Images refused while loading (chat and search), by error code.",
    ["code"], registry=REGISTRY)

# --- journal (every backend: journal.sqlite today) ---------------------------------------------------------
JOURNAL_APPEND_SECONDS = Histogram(
    "visionrag_journal_append_seconds", "Appending one exchange to the journal (lock wait and commit).",
    buckets=_FAST, registry=REGISTRY)


@contextlib.contextmanager
def journal_appends(count: int) -> Iterator[None]:
    """Time one commit of `count` exchanges, as every journal backend does: each exchange waited for the
    whole commit, so each counts one observation of it."""
    started = time.perf_counter()
    try:
        yield
    finally:
        elapsed = time.perf_counter() - started
        for _ in range(count):
            JOURNAL_APPEND_SECONDS.observe(elapsed)

# --- memory (memory.ingest, memory.search, api.memory) -------------------------------------------------------
INGESTED = Counter(
    "visionrag_ingested_exchanges", "Exchanges taken off the journal's backlog (stored in memory or skipped).",
    registry=REGISTRY)
EMBED_SECONDS = Histogram(
    "visionrag_memory_embed_seconds",
    "CLIP embedding: `ingest` is one batch (decode, images, texts), `search` one query.",
    ["path"], buckets=_MODEL, registry=REGISTRY)
STORE_SECONDS = Histogram(
    "visionrag_memory_store_seconds", "Vector store calls: `upsert` (one ingest batch) and `query` (one search).",
    ["op"], buckets=_MODEL, registry=REGISTRY)
RETRIEVALS = Counter(
    "visionrag_memory_retrievals",
    "Memory retrievals by source (`search`: POST /search) and outcome (`ok`: hits, `empty`: none, `error`: "
    "the model or store failed).", ["source", "outcome"], registry=REGISTRY)

EMBED_INGEST = EMBED_SECONDS.labels("ingest")
EMBED_SEARCH = EMBED_SECONDS.labels("search")
STORE_UPSERT = STORE_SECONDS.labels("upsert")
STORE_QUERY = STORE_SECONDS.labels("query")
for _outcome in ("ok", "empty", "error"):
    RETRIEVALS.labels("search", _outcome)  # present at zero from the start, for rate() and alerts


def retrieval(source: str, hits: int | None) -> None:
    """Count a retrieval: `hits=None` when it failed."""
    RETRIEVALS.labels(source, "error" if hits is None else "ok" if hits else "empty").inc()


P = ParamSpec("P")
T = TypeVar("T")


def counting_refusals(error: type[Exception]) -> Callable[[Callable[P, Awaitable[T]]], Callable[P, Awaitable[T]]]:
    """Decorate an async image loader: each `error` it raises is counted by its `code`, then re-raised."""

    def decorate(load: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
        @functools.wraps(load)
        async def counted(*args: P.args, **kwargs: P.kwargs) -> T:
            try:
                return await load(*args, **kwargs)
            except error as exc:
                IMAGES_REFUSED.labels(getattr(exc, "code", None) or "unknown").inc()
                raise

        return counted

    return decorate


# --- per request ------------------------------------------------------------------------------------------------
class _Request:
    """What the middleware knows of the request in hand; shared with the stream's relay task."""

    __slots__ = ("route", "stream")

    def __init__(self) -> None:
        self.route = "unmatched"
        self.stream = False


_current: ContextVar[_Request | None] = ContextVar("visionrag_metrics_request", default=None)


def recorded(status: str) -> None:
    """An exchange was journaled (proxy.recorder): if the request in hand is a stream, that is its end."""
    request = _current.get()
    if request is not None and request.stream:
        child(STREAMS_ENDED, request.route, status).inc()


_EVENT_STREAM = b"text/event-stream"


class MetricsMiddleware:
    """Pure ASGI (no BaseHTTPMiddleware: that buffers and costs a task per request, and breaks streams).

    Counts each request by route template and status and times it until the response starts; marks
    event-stream responses so that the recorder can count their end. A request whose handler raised
    before answering is counted as the 500 the outer error middleware sends."""

    def __init__(self, app: Callable[..., Awaitable[None]]) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = _Request()
        token = _current.set(request)
        started = time.perf_counter()
        answered = False

        def observe(status: int) -> None:
            # The router wrote the matched route into this same scope dict.
            route = scope.get("route")
            if route is not None:
                request.route = getattr(route, "path", "unmatched")
            seconds, count = _http_children(request.route, status)
            seconds.observe(time.perf_counter() - started)
            count.inc()

        async def send_observed(message: dict[str, Any]) -> None:
            nonlocal answered
            if message["type"] == "http.response.start":
                answered = True
                observe(message["status"])
                if message["status"] == 200 and _is_event_stream(message.get("headers", ())):
                    request.stream = True
                    child(STREAMS_STARTED, request.route).inc()
            await send(message)

        try:
            await self.app(scope, receive, send_observed)
        except Exception:
            if not answered:
                observe(500)
            raise
        finally:
            _current.reset(token)


_labelled: dict[tuple[Any, tuple[str, ...]], Any] = {}


def child(metric: Any, *values: str) -> Any:
    """`metric.labels(*values)` for the counts made on every request or stream: a dict hit after the first
    time, where `labels()` validates the values and takes a lock at each call."""
    found = _labelled.get((metric, values))
    if found is None:
        found = _labelled[metric, values] = metric.labels(*values)
    return found


_children: dict[tuple[str, int], tuple[Any, Any]] = {}


def _http_children(route: str, status: int) -> tuple[Any, Any]:
    # A dict hit instead of two `labels()` calls (each validates and locks): per request, this matters.
    children = _children.get((route, status))
    if children is None:
        children = _children[route, status] = (HTTP_SECONDS.labels(route), HTTP_REQUESTS.labels(route, status))
    return children


def _is_event_stream(headers: Iterable[tuple[bytes, bytes]]) -> bool:
    for name, value in headers:
        if name == b"content-type":
            return value.startswith(_EVENT_STREAM)
    return False


# --- scrape ----------------------------------------------------------------------------------------------------
class Scrape:
    """One exposition: this module's instruments plus the state of one app, read now.

    `upstreams`: objects with `base_url`, `healthy`, `outstanding` (proxy.upstream.Upstream);
    `backlog`: a callable counting the journal's un-ingested exchanges, None when memory is off (then the
    journal is never drained and its "backlog" would mean nothing). Blocking (SQLite): call it off the loop.
    """

    def __init__(self, upstreams: Sequence[Any], backlog: Callable[[], int] | None) -> None:
        self.upstreams = upstreams
        self.backlog = backlog

    def collect(self) -> Iterator[Metric]:
        yield from REGISTRY.collect()
        healthy = GaugeMetricFamily("visionrag_upstream_healthy",
                                    "1 while the replica is in rotation, 0 while it is probed as down.",
                                    labels=["replica"])
        in_flight = GaugeMetricFamily("visionrag_upstream_in_flight", "Requests open on the replica.",
                                      labels=["replica"])
        for upstream in self.upstreams:
            healthy.add_metric([upstream.base_url], 1.0 if upstream.healthy else 0.0)
            in_flight.add_metric([upstream.base_url], float(upstream.outstanding))
        yield healthy
        yield in_flight
        if self.backlog is not None:
            yield GaugeMetricFamily("visionrag_ingest_backlog",
                                    "Journaled exchanges not yet embedded into memory.", value=self.backlog())

    def render(self, accept: str | None) -> tuple[bytes, str]:
        """The exposition in the format the scraper accepts (Prometheus text, or OpenMetrics)."""
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self), content_type  # type: ignore[arg-type]

"""The OpenAI-compatible servers behind the gateway: one or several replicas of the same model.

Requests go to the healthy replica with the fewest requests in flight. A replica that refuses
connections is taken out of rotation and probed on `/health` until it answers again. A request is
retried on another replica only when the failure happened before anything reached the client,
which is always the case here: nothing is sent to the client until the upstream has answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field

import aiohttp

from gateway import metrics
from gateway.errors import Unavailable, UpstreamFailed, UpstreamTimeout

log = logging.getLogger("visionrag.upstream")


def upstream_unavailable(message: str, retry_after_s: float) -> Unavailable:
    """No replica accepts connections (vLLM restarting, or still loading its weights): 503 with
    Retry-After, so clients back off and retry instead of treating the gateway as broken."""
    return Unavailable(message, code="upstream_unavailable", retry_after_s=max(1.0, retry_after_s))


@dataclass(eq=False)
class Upstream:
    base_url: str  # ends in /v1
    outstanding: int = 0
    healthy: bool = True
    failures: int = field(default=0)

    @property
    def root_url(self) -> str:
        """Without `/v1`: where vLLM serves /health, /tokenize and /detokenize."""
        return self.base_url.removesuffix("/v1")

    @property
    def health_url(self) -> str:
        return f"{self.root_url}/health"


class UpstreamResponse:
    """An upstream response held open (for streaming); `release()` frees its replica slot."""

    def __init__(self, upstream: Upstream, response: aiohttp.ClientResponse) -> None:
        self.upstream = upstream
        self.response = response
        self._released = False

    @property
    def status(self) -> int:
        return self.response.status

    def release(self) -> None:
        if not self._released:
            self._released = True
            self.upstream.outstanding -= 1
            self.response.release()

    def close(self) -> None:
        """Drop the connection: for an abandoned stream, this tells the upstream to stop generating."""
        if not self._released:
            self._released = True
            self.upstream.outstanding -= 1
            self.response.close()


class UpstreamPool:
    def __init__(
        self,
        urls: list[str],
        *,
        api_key: str | None,
        connect_timeout_s: float,
        read_timeout_s: float,
        health_interval_s: float,
    ) -> None:
        self.upstreams = [Upstream(url) for url in urls]
        self._headers = {"Content-Type": "application/json"}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self._timeout = aiohttp.ClientTimeout(total=None, connect=connect_timeout_s, sock_read=read_timeout_s)
        self._health_interval_s = health_interval_s
        self._session: aiohttp.ClientSession | None = None
        self._prober: asyncio.Task | None = None

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300, keepalive_timeout=60)
        self._session = aiohttp.ClientSession(
            connector=connector, timeout=self._timeout, trust_env=False, auto_decompress=False
        )
        self._prober = asyncio.create_task(self._probe_loop(), name="upstream-health")

    async def close(self) -> None:
        if self._prober:
            self._prober.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._prober
        if self._session:
            await self._session.close()

    def pick(self, exclude: set[Upstream] | frozenset[Upstream] = frozenset()) -> Upstream | None:
        candidates = [u for u in self.upstreams if u.healthy and u not in exclude]
        if not candidates:
            # Every replica looks down: try the ones not yet tried rather than refuse outright.
            candidates = [u for u in self.upstreams if u not in exclude]
        return min(candidates, key=lambda u: u.outstanding, default=None)

    async def open(self, method: str, path: str, body: bytes | None = None, *,
                   root: bool = False) -> UpstreamResponse:
        """Send a request to a replica and return its response with headers read, body unread.

        `path` is under the replica's `/v1` base URL, or under its root with `root=True`."""
        assert self._session is not None, "UpstreamPool.start() was not called"
        tried: set[Upstream] = set()
        while (upstream := self.pick(tried)) is not None:
            tried.add(upstream)
            upstream.outstanding += 1
            sent = time.perf_counter()
            handed_over = False
            try:
                response = await self._session.request(
                    method, (upstream.root_url if root else upstream.base_url) + path, data=body,
                    headers=self._headers,
                )
                metrics.child(metrics.UPSTREAM_TTFB, path).observe(time.perf_counter() - sent)
                upstream.failures = 0
                handed_over = True
                return UpstreamResponse(upstream, response)  # its release() gives the slot back
            except (aiohttp.ClientConnectorError, aiohttp.ServerDisconnectedError,
                    aiohttp.ClientOSError) as exc:
                self._mark_down(upstream, exc)
                continue
            except (TimeoutError, aiohttp.ServerTimeoutError):
                raise UpstreamTimeout(
                    f"the upstream model server did not answer within {self._timeout.sock_read:g} s",
                    code="upstream_timeout",
                ) from None
            except aiohttp.ClientError as exc:
                log.warning("request to upstream %s failed: %r", upstream.base_url, exc)
                raise UpstreamFailed("the request to the upstream model server failed",
                                   code="upstream_error") from None
            finally:
                # Every other way out gives the slot back, a cancelled request (the caller gave up) too.
                if not handed_over:
                    upstream.outstanding -= 1
        # Which replicas and why is in the log (`_mark_down`); clients learn only that none answered,
        # and to come back after one probe interval: the soonest a replica can be back in rotation.
        raise upstream_unavailable(
            f"the upstream model server is unreachable ({len(tried)} of {len(self.upstreams)} replicas tried); "
            "try again shortly", retry_after_s=self._health_interval_s,
        )

    async def read(self, upstream_response: UpstreamResponse) -> bytes:
        """Read a whole (non-streamed) body, mapping a stall to 504."""
        try:
            return await upstream_response.response.read()
        except (TimeoutError, aiohttp.ServerTimeoutError):
            raise UpstreamTimeout(
                f"the upstream model server did not answer within {self._timeout.sock_read:g} s",
                code="upstream_timeout",
            ) from None
        except aiohttp.ClientError as exc:
            log.warning("reading from upstream %s failed: %r", upstream_response.upstream.base_url, exc)
            raise UpstreamFailed("the connection to the upstream model server broke off before the answer "
                               "was complete", code="upstream_error") from None
        finally:
            upstream_response.release()

    async def ready(self) -> dict[str, bool]:
        """Ask every replica now; used by GET /ready."""
        results = await asyncio.gather(*(self._probe(u) for u in self.upstreams))
        return {u.base_url: ok for u, ok in zip(self.upstreams, results, strict=True)}

    def _mark_down(self, upstream: Upstream, exc: BaseException) -> None:
        upstream.failures += 1
        if upstream.healthy:
            log.warning("upstream %s is down (%s); taking it out of rotation", upstream.base_url, exc)
        upstream.healthy = False

    async def _probe(self, upstream: Upstream) -> bool:
        assert self._session is not None
        timeout = aiohttp.ClientTimeout(total=max(2.0, self._timeout.connect or 2.0))
        ok = False
        with contextlib.suppress(aiohttp.ClientError, TimeoutError, OSError):
            async with self._session.get(upstream.health_url, timeout=timeout) as response:
                ok = response.status == 200
                if response.status == 404:
                    # Not every OpenAI-compatible server has /health; the model list is universal.
                    async with self._session.get(
                        upstream.base_url + "/models", headers=self._headers, timeout=timeout
                    ) as models:
                        ok = models.status == 200
        if ok and not upstream.healthy:
            log.info("upstream %s answers again; back in rotation", upstream.base_url)
        upstream.healthy = ok
        return ok

    async def _probe_loop(self) -> None:
        while True:
            await asyncio.sleep(self._health_interval_s)
            down = [u for u in self.upstreams if not u.healthy]
            if down:
                await asyncio.gather(*(self._probe(u) for u in down))

"""Fetching http(s) image URLs without becoming a proxy into private networks (SSRF).

Every hop is checked: the host's addresses are resolved and refused unless all are public,
and the connection goes to exactly the addresses that were checked (the check lives in the
resolver aiohttp connects with, so DNS rebinding between check and connect cannot happen).
Redirects are followed by hand, a bounded number of times, each one checked again.
Errors say what failed, never what a name resolved to or a library's message: those go to the log.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from dataclasses import dataclass
from urllib.parse import urljoin

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver
from yarl import URL

from gateway.images.addresses import is_public_address
from gateway.images.errors import ImageError

log = logging.getLogger("visionrag.images")

_REDIRECTS = {301, 302, 303, 307, 308}


@dataclass(frozen=True, slots=True)
class FetchPolicy:
    timeout_s: float
    max_bytes: int
    max_redirects: int
    # `host` or `host:port` entries fetched even when they resolve to non-public addresses.
    allow_hosts: frozenset[str] = frozenset()

    def allows(self, host: str, port: int | None) -> bool:
        return host in self.allow_hosts or f"{host}:{port}" in self.allow_hosts


class BlockedAddress(aiohttp.ClientError):
    pass


class _PublicOnlyResolver(AbstractResolver):
    def __init__(self, policy: FetchPolicy) -> None:
        self._policy = policy
        self._inner = DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        if self._policy.allows(host, port):
            return results
        blocked = [r["host"] for r in results if not is_public_address(r["host"])]
        if blocked:
            log.warning("image fetch refused: %s resolves to non-public %s", host, ", ".join(blocked))
            raise BlockedAddress(host)
        return results

    async def close(self) -> None:
        await self._inner.close()


class ImageFetcher:
    """Fetches image bytes over http(s) under a FetchPolicy. One per app; call `close()`."""

    def __init__(self, policy: FetchPolicy) -> None:
        self.policy = policy
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(
                resolver=_PublicOnlyResolver(self.policy), use_dns_cache=False, limit=64
            )
            # trust_env=False: an HTTP(S)_PROXY in the environment must not route around the checks.
            self._session = aiohttp.ClientSession(connector=connector, trust_env=False)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    def _check_literal_host(self, url: URL) -> None:
        host = url.host or ""
        if url.scheme not in ("http", "https"):
            raise ImageError(f"image URL scheme {url.scheme!r} is not allowed; use http(s) or data:",
                             code="invalid_image_url")
        if not host:
            raise ImageError("image URL has no host", code="invalid_image_url")
        # aiohttp connects to IP literals without asking the resolver, so check them here.
        if _is_ip_literal(host) and not self.policy.allows(host, url.port) and not is_public_address(host):
            raise ImageError(f"image URL points to a non-public address ({host})", code="image_url_blocked")

    async def fetch(self, url: str) -> bytes:
        try:
            return await asyncio.wait_for(self._fetch(url), self.policy.timeout_s)
        except TimeoutError:
            raise ImageError(
                f"fetching the image timed out after {self.policy.timeout_s:g} s", code="image_fetch_timeout"
            ) from None

    async def _fetch(self, url: str) -> bytes:
        current = url
        for _ in range(self.policy.max_redirects + 1):
            try:
                target = URL(current)
            except (ValueError, TypeError):
                raise ImageError("image URL is not a valid URL", code="invalid_image_url") from None
            self._check_literal_host(target)
            try:
                async with self._client().get(target, allow_redirects=False) as response:
                    if response.status in _REDIRECTS and "Location" in response.headers:
                        current = urljoin(str(target), response.headers["Location"])
                        continue
                    if response.status != 200:
                        raise ImageError(f"fetching the image returned HTTP {response.status}",
                                         code="image_fetch_failed")
                    return await self._read_limited(response)
            except BlockedAddress:
                raise ImageError(f"image URL host {target.host} resolves to a non-public address",
                                 code="image_url_blocked") from None
            except aiohttp.InvalidURL:
                raise ImageError("image URL is not allowed", code="invalid_image_url") from None
            except aiohttp.ClientError as exc:
                log.info("image fetch from %s failed: %r", target.host, exc)
                raise ImageError(f"could not fetch the image: {_what_failed(exc)}",
                                 code="image_fetch_failed") from None
        raise ImageError(f"image URL redirected more than {self.policy.max_redirects} times",
                         code="image_fetch_failed")

    async def _read_limited(self, response: aiohttp.ClientResponse) -> bytes:
        limit = self.policy.max_bytes
        if response.content_length is not None and response.content_length > limit:
            raise ImageError(f"image is larger than the {limit}-byte limit", code="image_too_large")
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.content.iter_chunked(64 * 1024):
            size += len(chunk)
            if size > limit:
                raise ImageError(f"image is larger than the {limit}-byte limit", code="image_too_large")
            chunks.append(chunk)
        return b"".join(chunks)


def _what_failed(exc: aiohttp.ClientError) -> str:
    """The failure in the client's terms (the exception's own text names addresses and internals)."""
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return "its host name does not resolve"
    if isinstance(exc, aiohttp.ClientConnectorCertificateError | aiohttp.ClientSSLError):
        return "the TLS handshake with its host failed"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return "its host refused or did not accept the connection"
    if isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError):
        return "its host closed the connection before the whole image arrived"
    return "the HTTP exchange with its host failed"


def _is_ip_literal(host: str) -> bool:
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
        return True
    except OSError:
        return False

"""Fetch URLs the way vLLM 0.10.2's vllm/connections.py does; run with .venv-vllm's python.

0.10.2's HTTPConnection builds `aiohttp.ClientSession(trust_env=True)` (the OpenAI server's async
media path) and `requests.Session()` (the sync path) and calls `.get(url, timeout=...)`. vLLM 0.10.2
itself needs CUDA and cannot be installed here, so this reproduces those two calls with the same
libraries from vLLM 0.32's venv; the proxy settings come from the environment this script gets.

argv: URLs. stdout: JSON {url: {"aiohttp": outcome, "requests": outcome, "proxied": bool}}, where
outcome is "status 200" or the exception's class name, and proxied says whether urllib, which both
libraries use to read the environment, sends that URL to a proxy.
"""

from __future__ import annotations

import asyncio
import json
import sys
import urllib.request

import aiohttp
import requests


async def with_aiohttp(url: str) -> str:
    async with aiohttp.ClientSession(trust_env=True) as session:
        try:
            async with session.get(url, timeout=aiohttp.ClientTimeout(total=1)) as response:
                return f"status {response.status}"
        except Exception as exc:  # noqa: BLE001 - the failure's kind is the answer
            return type(exc).__name__


def with_requests(url: str) -> str:
    try:
        return f"status {requests.Session().get(url, timeout=1).status_code}"
    except Exception as exc:  # noqa: BLE001 - the failure's kind is the answer
        return type(exc).__name__


def proxied(url: str) -> bool:
    host = urllib.request.urlparse(url).hostname or ""
    return bool(urllib.request.getproxies()) and not urllib.request.proxy_bypass(host)


def main() -> int:
    results = {
        url: {
            "aiohttp": asyncio.run(with_aiohttp(url)),
            "requests": with_requests(url),
            "proxied": proxied(url),
        }
        for url in sys.argv[1:]
    }
    json.dump(results, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())

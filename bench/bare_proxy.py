"""The floor: a bare aiohttp pass-through proxy (no parsing, no images, no journal).

Measured beside the gateway in the same run so the gateway's cost has a reference.
    python -m bench.bare_proxy --port 9200 --upstream http://127.0.0.1:9000
"""

from __future__ import annotations

import argparse

import aiohttp
from aiohttp import web


def make_app(upstream: str) -> web.Application:
    async def on_startup(app: web.Application) -> None:
        app["session"] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), auto_decompress=False)

    async def on_cleanup(app: web.Application) -> None:
        await app["session"].close()

    async def relay(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        async with request.app["session"].request(
            request.method, upstream + request.path, data=body,
            headers={"Content-Type": "application/json"},
        ) as upstream_response:
            response = web.StreamResponse(status=upstream_response.status,
                                          headers={"Content-Type": upstream_response.content_type})
            await response.prepare(request)
            async for chunk in upstream_response.content.iter_any():
                await response.write(chunk)
            await response.write_eof()
            return response

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    app.router.add_route("*", "/{tail:.*}", relay)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9200)
    parser.add_argument("--upstream", required=True, help="upstream root URL, e.g. http://127.0.0.1:9000")
    args = parser.parse_args()
    import uvloop

    uvloop.install()
    web.run_app(make_app(args.upstream.rstrip("/")), host=args.host, port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()

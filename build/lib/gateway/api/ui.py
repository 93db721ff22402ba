"""`GET /ui` and its files, under a strict Content-Security-Policy; `GET /ui/features`, what this gateway
offers the page (search and similar images need memory; browsing, exchanges and forgetting do not).

The page's files are read once at import from `static/` and served by name from that fixed set, so no
request path ever reaches the filesystem. Every response here forbids inline script and style, framing
by other sites, MIME sniffing and HTML string sinks (Trusted Types with no policy: assigning a string to
`innerHTML` throws), so model output the page shows can only ever be text.
"""

from __future__ import annotations

import mimetypes
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

from gateway.api.deps import OptionalMemoryDep, TenantDep

STATIC = Path(__file__).resolve().parents[1] / "ui" / "static"
_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
          ".html": "text/html; charset=utf-8", ".svg": "image/svg+xml"}

_CSP_DIRECTIVES = [
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    # blob: the page fetches images with the API key and shows them from memory.
    "img-src 'self' blob:",
    "connect-src 'self'",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
    "require-trusted-types-for 'script'",
    "trusted-types 'none'",
]
CSP = "; ".join(_CSP_DIRECTIVES)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    # The files change with the gateway's version: always revalidate, never serve a stale page.
    "Cache-Control": "no-cache",
}


def _load() -> dict[str, tuple[bytes, str]]:
    files = {}
    for path in sorted(STATIC.rglob("*")):
        if path.is_file() and path.name != "index.html":
            mime = _TYPES.get(path.suffix) or mimetypes.guess_type(path.name)[0] or "application/octet-stream"
            files[path.relative_to(STATIC).as_posix()] = (path.read_bytes(), mime)
    return files


_INDEX = (STATIC / "index.html").read_bytes()
_FILES = _load()

router = APIRouter(include_in_schema=False)


@router.get("/ui")
async def page() -> Response:
    return Response(_INDEX, media_type="text/html; charset=utf-8", headers=HEADERS)


@router.get("/ui/features")
async def features(_: TenantDep, memory: OptionalMemoryDep) -> Response:
    """Asked with the tab's key, like every other call of the page: whether memory is on tells no
    caller without one more than /search would."""
    return JSONResponse({"memory": memory is not None}, headers=HEADERS)


@router.get("/ui/static/{name:path}")
async def asset(name: str) -> Response:
    found = _FILES.get(name)
    if found is None:
        return Response(b"not found", status_code=404, media_type="text/plain", headers=HEADERS)
    data, mime = found
    return Response(data, media_type=mime, headers=HEADERS)

"""The history HTTP API: GET /exchanges, GET /exchanges/{id}, DELETE /exchanges/{id}, POST /exchanges/forget,
GET /images/{sha256}.

`router` is included by the app at construction; `History` reaches the routes as `HistoryDep`
(gateway.api.deps). These need the journal and the blob store alone: they answer the same with memory on
or off (VISIONRAG_MEMORY_ENABLED), and from any gateway on a shared journal.

Every route is scoped to the caller's tenant (gateway.api.deps.TenantDep). Another tenant's exchange
or image answers 404, exactly like one that does not exist, so ids and hashes leak nothing.
The routes call only `History`'s methods (which keep blocking work off the event loop); the errors they
raise become responses in gateway.api.errors.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response, StreamingResponse
from starlette.concurrency import iterate_in_threadpool
from starlette.routing import NoMatchFound

from gateway.api.body import openapi_body, read_model
from gateway.api.deps import HistoryDep, TenantDep
from gateway.api.openapi import failures as F
from gateway.api.openapi.responses import errors, image_bytes
from gateway.history.browse import ExchangeQuery
from gateway.history.protocol import (
    MAX_LIMIT,
    ExchangeImage,
    ExchangeList,
    ExchangeResponse,
    ExchangeSummary,
    ForgetRequest,
    ForgetResponse,
    unix,
)
from gateway.history.thumbnails import SIZES, snap
from gateway.journal import BlobStream, Exchange

router = APIRouter(tags=["history"])

# The name of GET /images/{sha256}, for `url_for`.
IMAGE_ROUTE = "history_image"


def image_url(request: Request, sha256: str | None) -> str | None:
    """Where this gateway serves the image (GET /images/{sha256}); None without one, or in an app that
    does not include these routes."""
    if not sha256:
        return None
    try:
        return str(request.url_for(IMAGE_ROUTE, sha256=sha256))
    except NoMatchFound:
        return None


@router.get("/exchanges/{exchange_id}", response_model=ExchangeResponse,
            responses=errors(F.EXCHANGE_NOT_FOUND, F.EXCHANGE_ID_AMBIGUOUS))
async def get_exchange(
    exchange_id: str,
    request: Request,
    tenant: TenantDep,
    history: HistoryDep,
) -> ExchangeResponse:
    """One recorded exchange of the caller's tenant (another tenant's answers 404), by its id or a unique
    prefix of it (4 characters or more, as git takes a short commit id; 400 when several ids start so)."""
    exchange = await history.exchange(tenant, exchange_id)
    return ExchangeResponse(
        **_summary_fields(request, exchange),
        messages=exchange.messages,
        finish_reason=exchange.finish_reason,
        usage=exchange.usage,
        latency_ms=exchange.latency_ms,
        sources=(exchange.extra.get("memory") or {}).get("sources", []),
    )


def _summary_fields(request: Request, exchange: Exchange) -> dict[str, Any]:
    """What GET /exchanges lists of an exchange (ExchangeSummary); GET /exchanges/{id} adds the rest."""
    return {
        "id": exchange.id,
        "time": datetime.fromtimestamp(exchange.created_at, tz=UTC),
        "endpoint": exchange.endpoint,
        "model": exchange.model,
        "user": exchange.user,
        "status": exchange.status,
        "question": exchange.question,
        "answer": exchange.answer,
        "images": [ExchangeImage(sha256=i.sha256, mime=i.mime, url=image_url(request, i.sha256) or "",
                                 source_url=i.source_url) for i in exchange.images],
    }


@router.delete("/exchanges/{exchange_id}", status_code=204,
               responses=errors(F.EXCHANGE_NOT_FOUND, F.EXCHANGE_ID_AMBIGUOUS))
async def delete_exchange(exchange_id: str, tenant: TenantDep, history: HistoryDep) -> Response:
    """Forget one exchange of the caller's tenant everywhere: its text, its vectors (memory on), and each image
    no other exchange uses (another tenant's id answers 404). By its id or a unique prefix, as GET takes it. The 204 comes as soon as nothing reads it any
    more; its files and vectors are deleted right after, retried in the background while the store refuses."""
    await history.forget(tenant, exchange_id)
    return Response(status_code=204)


@router.post("/exchanges/forget", response_model=ForgetResponse, openapi_extra=openapi_body(ForgetRequest),
             responses=errors(F.FORGET_WITHOUT_FILTER))
async def forget_exchanges(request: Request, tenant: TenantDep, history: HistoryDep) -> ForgetResponse:
    """Forget every exchange of the caller's tenant of one `user` and/or older than `before`, as
    DELETE /exchanges/{exchange_id} does each."""
    body = await read_model(request, ForgetRequest)
    deleted = await history.forget_where(tenant, user=body.user, before=unix(body.before))
    return ForgetResponse(deleted=deleted)


@router.get("/exchanges", response_model=ExchangeList, responses=errors(F.INVALID_CURSOR))
async def list_exchanges(
    request: Request,
    tenant: TenantDep,
    history: HistoryDep,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 20,
    cursor: Annotated[str | None, Query(description="`next_cursor` of the previous page")] = None,
    time_from: Annotated[datetime | None, Query(description="ISO 8601 or unix seconds, inclusive")] = None,
    time_to: Annotated[datetime | None, Query(description="ISO 8601 or unix seconds, inclusive")] = None,
    model: Annotated[list[str] | None, Query(description="Only these models (repeatable)")] = None,
    user: Annotated[str | None, Query(description="Only this client `user`")] = None,
) -> ExchangeList:
    """The caller's tenant's exchanges, most recent first, a page at a time: pass `next_cursor` back as
    `cursor` for the next (older) page."""
    query = ExchangeQuery(limit=limit, cursor=cursor, time_from=unix(time_from), time_to=unix(time_to),
                          models=tuple(model or ()), user=user)
    page = await history.list_exchanges(tenant, query)
    return ExchangeList(
        data=[ExchangeSummary(**_summary_fields(request, e)) for e in page.exchanges],
        next_cursor=page.next_cursor,
        has_more=page.next_cursor is not None,
    )


# Who may read an image is decided at each request (the caller's tenant, and never again once its
# exchanges are forgotten), so no cache may answer for us: `no-cache` makes a browser ask every time,
# `private` keeps shared caches out, and `Vary: Authorization` keeps a copy fetched with one key from
# answering a request made with another. Asking stays cheap, where `no-store` would download every view
# again: the ETag is the content's own hash, so a copy the caller may still see costs a 304 without the
# bytes, and a forgotten one gets a 404.
IMAGE_CACHING = {"Cache-Control": "private, no-cache", "Vary": "Authorization"}


@router.get("/images/{sha256}", name=IMAGE_ROUTE, response_class=Response, responses={
    **image_bytes(),
    304: {"description": "Not modified: `If-None-Match` names the ETag and the caller may still see the image "
                         "(a forgotten one answers 404)."},
    **errors(F.IMAGE_NOT_FOUND),
})
async def get_image(
    sha256: str,
    request: Request,
    tenant: TenantDep,
    history: HistoryDep,
    size: Annotated[int | None, Query(ge=1, le=SIZES[-1], description=(
        "A thumbnail (WebP) at most this many px on its longer side, served at the next of "
        f"{', '.join(map(str, SIZES))}; without it, the original")),
    ] = None,
) -> Response:
    """An image the model saw, by its sha256, if one of the caller's tenant's exchanges carries it (else 404).
    With `size`, a WebP thumbnail (made once, cached) instead of the original."""
    # Content-addressed: the bytes behind a hash never change. A thumbnail is weak: its bytes depend on
    # the renderer, its picture does not.
    etag = f'"{sha256}"' if size is None else f'W/"{sha256}-{snap(size)}"'
    headers = {**IMAGE_CACHING, "ETag": etag}
    if _matches(request.headers.get("if-none-match"), etag):
        await history.image_access(tenant, sha256)
        return Response(status_code=304, headers=headers)
    # nosniff: a browser renders it as the stored type only, never as HTML or script it might resemble.
    headers["X-Content-Type-Options"] = "nosniff"
    if size is not None:
        thumbnail = await history.thumbnail(tenant, sha256, size)
        return Response(thumbnail.data, media_type=thumbnail.mime, headers=headers)
    # The original is passed on as it is read, never held whole (images may be large, and many at once).
    image = await history.image_stream(tenant, sha256)
    return StreamingResponse(_chunks(image.stream), media_type=image.mime,
                             headers={**headers, "Content-Length": str(image.stream.size)})


async def _chunks(stream: BlobStream) -> AsyncIterator[bytes]:
    """The stream's chunks, each read on a thread of the pool; closed however the response ends (a client
    that left half-way included)."""
    try:
        async for chunk in iterate_in_threadpool(stream):
            yield chunk
    finally:
        stream.close()


def _matches(if_none_match: str | None, etag: str) -> bool:
    """Whether an If-None-Match header names `etag` (compared weakly, as RFC 9110 says for it)."""
    if not if_none_match:
        return False
    opaque = etag.removeprefix("W/")
    return any(tag.strip().removeprefix("W/") in ("*", opaque) for tag in if_none_match.split(","))

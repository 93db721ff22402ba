"""The memory HTTP API: POST /search, GET /memory/stats.

`router` is included by the app at construction; `Memory` reaches the routes as `MemoryDep`
(gateway.api.deps). Without one (memory disabled) the routes answer 503 `memory_disabled`; what was
recorded is still read and forgotten through the history routes (gateway.api.history).

Every route is scoped to the caller's tenant (gateway.api.deps.TenantDep). Only an operator key
(VISIONRAG_ADMIN_KEYS) sees totals across tenants, in /memory/stats.
The routes call only `Memory`'s methods (which keep blocking work off the event loop); the errors
they raise become responses in gateway.api.errors, which logs store and model failures and answers them
without their details (paths, URLs, library messages).
"""

from __future__ import annotations

import functools

from fastapi import APIRouter, Request

from gateway.api.body import openapi_body, read_model
from gateway.api.deps import AuthDep, CallerDep, MemoryDep, TenantDep
from gateway.api.history import image_url
from gateway.api.openapi import failures as F
from gateway.api.openapi.responses import errors
from gateway.memory.protocol import SearchRequest, SearchResponse
from gateway.memory.store.base import SearchFilter

router = APIRouter(tags=["memory"])


@router.post("/search", response_model=SearchResponse, openapi_extra=openapi_body(SearchRequest),
             responses=errors(*F.SEARCH, F.memory_unavailable("search")))
async def search(
    request: Request,
    tenant: TenantDep,
    memory: MemoryDep,
) -> SearchResponse:
    """Past exchanges of the caller's tenant, most similar first, by text or by image."""
    body = await read_model(request, SearchRequest)
    flt = SearchFilter(
        tenant=tenant,
        time_from=body.filters.time_from,
        time_to=body.filters.time_to,
        models=body.filters.models,
        user=body.filters.user,
    )
    outcome = await memory.search(flt, text=body.text, image=body.image, target=body.target, limit=body.limit)
    return SearchResponse.of(body, outcome, functools.partial(image_url, request))


@router.get("/memory/stats")
async def stats(caller: CallerDep, memory: MemoryDep, auth: AuthDep) -> dict[str, object]:
    """A tenant's key: that tenant's backlog and stored points. An operator key: the whole memory path
    (backlog, worker, store) and the points of every tenant that has a key, `default` included."""
    if caller.admin:
        return await memory.all_stats(auth.tenants)
    assert caller.tenant is not None
    return await memory.tenant_stats(caller.tenant)


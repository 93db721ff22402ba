"""Operations routes: GET /metrics (Prometheus; see gateway.api.deps.require_admin)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from gateway.api.deps import AdminDep, ChatDep, HistoryDep, OptionalMemoryDep
from gateway.metrics import Scrape

router = APIRouter(tags=["operations"])


@router.get("/metrics", response_class=Response,
            responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}})
async def metrics(request: Request, _: AdminDep, chat: ChatDep, history: HistoryDep,
                  memory: OptionalMemoryDep) -> Response:
    """Requests, latencies, streams, refused images, journal, ingest and memory, upstream replicas.

    Open on an open gateway; once keys are configured, only an operator key (VISIONRAG_ADMIN_KEYS)."""
    # The backlog means something where memory drains it: here, or in the workers of a shared journal
    # (whose autoscaler may read it from any gateway).
    drained = memory is not None or request.app.state.settings.shared_journal
    scrape = Scrape(chat.pool.upstreams, history.journal.backlog if drained else None)
    # The backlog is a database count: off the event loop.
    body, content_type = await run_in_threadpool(scrape.render, request.headers.get("accept"))
    return Response(body, media_type=content_type)

"""`visionrag list`: a tenant's past exchanges, most recent first, a page at a time."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

import typer

from gateway.cli.env import load_settings
from gateway.cli.local import run_local
from gateway.cli.output import SHORT_ID, console, err, fail, print_table, short, table

if TYPE_CHECKING:
    from gateway.history.browse import ExchangePage
    from gateway.runtime import Runtime


def list_(
    tenant: Annotated[str | None, typer.Option(help="Whose exchanges. Default: the default tenant.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=100)] = 20,
    cursor: Annotated[str | None, typer.Option(help="Continue after a previous page (its next cursor).")] = None,
    model: Annotated[list[str] | None, typer.Option(help="Only these models (repeatable).")] = None,
    user: Annotated[str | None, typer.Option(help="Only this client `user`.")] = None,
    since: Annotated[datetime | None, typer.Option(help="Only exchanges at or after this time (UTC).")] = None,
    until: Annotated[datetime | None, typer.Option(help="Only exchanges at or before this time (UTC).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the exchanges as JSON lines.")] = False,
) -> None:
    """List past exchanges, most recent first, a page at a time (like GET /exchanges).

    Reads the journal alone (memory on or off); works while a gateway runs.
    """
    from gateway.errors import InvalidRequest
    from gateway.history.browse import ExchangeQuery
    from gateway.history.protocol import unix

    settings = load_settings()
    query = ExchangeQuery(limit=limit, cursor=cursor, time_from=unix(since), time_to=unix(until),
                          models=tuple(model or ()), user=user)
    tenant = tenant or settings.default_tenant

    async def work(runtime: Runtime, _: object) -> tuple[ExchangePage, list[str]]:
        page = await runtime.history.list_exchanges(tenant, query)
        ids = [e.id for e in page.exchanges]
        return page, ([] if as_json else await runtime.history.short_ids(tenant, ids, SHORT_ID))

    try:
        page, short_ids = run_local(settings, work, needs_memory=False)
    except InvalidRequest as exc:
        raise fail(exc.message) from None
    if as_json:
        for e in page.exchanges:
            console.print_json(json.dumps({
                "id": e.id, "time": datetime.fromtimestamp(e.created_at, tz=UTC).isoformat(), "model": e.model,
                "user": e.user, "status": e.status, "question": e.question, "answer": e.answer,
                "images": [i.sha256 for i in e.images]}))
    else:
        # Exchanges by the shortest prefix `visionrag forget` takes back to them; --json has the whole ids.
        rows = table(f"{len(page.exchanges)} exchange(s), most recent first",
                     ("time", "model", "user", "question", "answer", "image", "exchange"),
                     no_wrap=("time", "model", "image", "exchange"))
        for e, short_id in zip(page.exchanges, short_ids, strict=True):
            rows.add_row(datetime.fromtimestamp(e.created_at, tz=UTC).strftime("%Y-%m-%d %H:%M"), e.model,
                         e.user or "", short(e.question), short(e.answer),
                         e.images[0].sha256[:8] if e.images else "", short_id)
        print_table(rows)
    if page.next_cursor:
        err.print(f"more: --cursor {page.next_cursor}")

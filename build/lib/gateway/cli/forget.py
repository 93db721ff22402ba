"""`visionrag forget`: exchanges forgotten everywhere, here or by the running gateway."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated
from urllib.parse import quote

import typer

from gateway.cli.env import gateway_url, load_settings
from gateway.cli.local import run_local
from gateway.cli.output import console, err, fail
from gateway.cli.remote import ApiKeyOption, GatewayOption, gateway_call

if TYPE_CHECKING:
    from gateway.memory.service import Memory
    from gateway.runtime import Runtime
    from gateway.settings import Settings


def forget(
    exchange_id: Annotated[list[str] | None, typer.Argument(
        help="Exchange ids to forget, each whole or a unique prefix (4 characters or more), as tables show.")] = None,
    user: Annotated[str | None, typer.Option(help="Forget every exchange of this client `user`.")] = None,
    before: Annotated[datetime | None, typer.Option(help="Forget every exchange older than this (UTC).")] = None,
    tenant: Annotated[str | None, typer.Option(help="Tenant whose exchanges these are (default tenant).")] = None,
    gateway: GatewayOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Forget exchanges everywhere: journal, vector store, and the images no other exchange uses.

    Give ids, or --user and/or --before. While a gateway holds the embedded store (or with --gateway),
    the gateway does it (for the API key's tenant)."""
    from gateway.history.protocol import aware, unix

    if not exchange_id and user is None and before is None:
        raise fail("give exchange ids, --user, --before, or --user with --before")
    if exchange_id and (user is not None or before is not None):
        raise fail("give exchange ids or --user/--before, not both")
    settings = load_settings()
    when = None if before is None else aware(before)
    count = None if gateway else _local_forget(settings, tenant or settings.default_tenant, exchange_id or [],
                                               user, unix(when))
    if count is None:
        base = gateway or gateway_url(settings)
        if exchange_id:
            for one in exchange_id:
                gateway_call("delete", base, f"/exchanges/{quote(one, safe='')}", api_key, expect=204)
            count = len(exchange_id)
        else:
            body = {"user": user, "before": when.isoformat() if when else None}
            count = gateway_call("post", base, "/exchanges/forget", api_key,
                                 json={k: v for k, v in body.items() if v is not None})["deleted"]
    console.print(f"forgotten: {count}")


def _local_forget(settings: Settings, tenant: str, ids: list[str], user: str | None,
                  before: float | None) -> int | None:
    """Forget in this process (history's forgetter, with the store's points); None if a running gateway
    holds the embedded store."""
    from gateway.errors import InvalidRequest, NotFound
    from gateway.memory.store.base import StoreError, StoreLocked

    async def work(runtime: Runtime, memory: Memory | None) -> int | None:
        try:
            if memory is not None:
                memory.open()
        except StoreLocked:
            return None
        except StoreError:
            pass  # the journal's part needs no store; finishing, below, says what is left
        history = runtime.history
        if ids:
            deleted: set[str] = set()
            missing: list[str] = []
            for one in dict.fromkeys(ids):
                try:
                    deleted.add(await history.forget(tenant, one))
                except NotFound:
                    missing.append(one)
                except InvalidRequest as exc:  # an ambiguous prefix: its message lists the candidates
                    err.print(f"[red]error:[/red] {exc.message}")
            if missing:
                err.print(f"not found in tenant {tenant!r}: {', '.join(sorted(missing))}")
            count = len(deleted)
        else:
            count = await history.forget_where(tenant, user=user, before=before)
        try:
            history.finish_forgetting()  # with what an earlier run or a stopped gateway left unfinished
        except StoreError as exc:
            err.print(f"[yellow]warning:[/yellow] the vector store refused to delete the points ({exc}). "
                      "The exchanges are forgotten already (nothing reads them); their points are deleted "
                      "at the gateway's next start or by the next `visionrag forget`.")
        return count

    return run_local(settings, work, needs_memory=False)

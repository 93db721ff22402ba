"""`visionrag status`: the journal's backlog and the vector store's size."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.table import Table

from gateway.cli.env import gateway_url, load_settings
from gateway.cli.local import run_local
from gateway.cli.output import console
from gateway.cli.remote import ApiKeyOption, GatewayOption, gateway_call

if TYPE_CHECKING:
    from gateway.memory.service import Memory
    from gateway.runtime import Runtime


def status(
    gateway: GatewayOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Show the journal's backlog and the vector store's size (from the running gateway when it holds the store)."""
    from gateway.memory.store.base import StoreError, StoreLocked

    settings = load_settings()
    table = Table(show_header=False)
    table.add_row("data", str(settings.data_dir))
    if gateway:
        _gateway_status(table, gateway, api_key)
        console.print(table)
        return

    def work(runtime: Runtime, memory: Memory) -> bool:
        """Fills the table; True when a running gateway holds the store."""
        journal = runtime.journal
        table.add_row("journal", f"{journal.count()} exchanges, {journal.backlog()} waiting to be embedded")
        try:
            stats = memory.store_stats()
        except StoreLocked:
            return True
        except StoreError as exc:
            table.add_row("store", f"[red]{exc}[/]")
            return False
        table.add_row("store", f"{stats.backend} at {stats.location}: {stats.points} points, "
                      f"{stats.indexed_vectors if stats.indexed_vectors is not None else 'n/a'} indexed vectors")
        return False

    if run_local(settings, work):
        _gateway_status(table, gateway_url(settings), api_key)
    console.print(table)


def _gateway_status(table: Table, base_url: str, api_key: str | None) -> None:
    """The running gateway's GET /memory/stats: every tenant's counts for an operator (or an open
    gateway), one tenant's for a tenant's key."""
    stats = gateway_call("get", base_url, "/memory/stats", api_key)
    if "store" not in stats:  # a tenant's view
        table.add_row("store", f"held by the gateway at {base_url}: tenant {stats.get('tenant')}: "
                      f"{stats.get('points')} points, {stats.get('backlog')} waiting to be embedded")
        return
    store = stats["store"]
    if "error" in store:
        table.add_row("store", f"held by the gateway at {base_url}: [red]{store['error']}[/]")
    else:
        indexed = store.get("indexed_vectors")
        table.add_row("store", f"{store.get('backend')}, held by the gateway at {base_url}: {store.get('points')} "
                      f"points, {indexed if indexed is not None else 'n/a'} indexed vectors, "
                      f"{stats.get('backlog')} exchanges waiting to be embedded")
    for tenant, counts in sorted(stats.get("tenants", {}).items()):
        table.add_row(f"tenant {tenant}", f"{counts.get('points')} points, {counts.get('backlog')} waiting")

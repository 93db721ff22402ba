"""Retention: exchanges older than a number of days forgotten in the background, globally or per tenant
(VISIONRAG_MEMORY_RETENTION_*: named when memory owned it; it runs with memory off too)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from gateway.background import DaemonLoop
from gateway.history.forget import Forgetter
from gateway.journal import Journal

log = logging.getLogger("visionrag.history.retention")

DAY_S = 86_400.0


@dataclass(frozen=True, slots=True)
class Retention:
    """Days an exchange is kept: `days` for every tenant (0: forever), `by_tenant` overriding it."""

    days: float = 0.0
    by_tenant: dict[str, float] = field(default_factory=dict)
    interval_s: float = 3600.0

    @property
    def enabled(self) -> bool:
        return self.days > 0 or any(d > 0 for d in self.by_tenant.values())

    def cutoffs(self, tenants: list[str], now: float) -> dict[str, float]:
        """Each tenant's oldest kept time (unix seconds), for the tenants with a limit."""
        days = {tenant: self.by_tenant.get(tenant, self.days) for tenant in tenants}
        return {tenant: now - d * DAY_S for tenant, d in days.items() if d > 0}

    @classmethod
    def parse(cls, days: float, entries: list[str], interval_s: float) -> Retention:
        """`entries`: `tenant:days` strings (VISIONRAG_MEMORY_RETENTION_TENANT_DAYS)."""
        by_tenant = {}
        for entry in entries:
            tenant, sep, value = entry.rpartition(":")
            if not sep or not tenant:
                raise ValueError(f"retention entry {entry!r} is not tenant:days")
            by_tenant[tenant] = float(value)
        return cls(days, by_tenant, interval_s)


def sweep(policy: Retention, journal: Journal, forgetter: Forgetter, now: float | None = None) -> int:
    """Forget what `policy` no longer keeps; returns how many exchanges."""
    total = 0
    for tenant, cutoff in policy.cutoffs(journal.tenants(), now or time.time()).items():
        total += forgetter.forget_where(tenant, before=cutoff)
    return total


class RetentionSweeper(DaemonLoop):
    """A daemon thread that sweeps at start and then every `interval_s`."""

    name = "history-retention"

    def __init__(self, policy: Retention, journal: Journal, forgetter: Forgetter) -> None:
        super().__init__()
        self.policy = policy
        self.journal = journal
        self.forgetter = forgetter

    def start(self) -> None:
        if self.policy.enabled:
            super().start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                # One process sweeps a shared journal at a time (the others would race it for nothing);
                # the journal's part only: the history service's finisher does the rest (forget.Finisher).
                if self.journal.lead("retention") and (forgotten := sweep(self.policy, self.journal, self.forgetter)):
                    log.info("retention: forgot %d exchange(s)", forgotten)
            except Exception as exc:  # noqa: BLE001 - retried at the next sweep
                log.warning("retention sweep failed: %s", exc)
            self._stop.wait(self.policy.interval_s)

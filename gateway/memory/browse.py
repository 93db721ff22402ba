"""Browsing a tenant's exchanges newest first, a page at a time (`Memory.list_exchanges`).

The cursor is opaque to clients: the last row's (created_at, seq), so the next page starts right
after it even while new exchanges are recorded (they sort before the first page, not into later ones).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from gateway.service_errors import ServiceError

if TYPE_CHECKING:
    from gateway.journal import Exchange


@dataclass(frozen=True, slots=True)
class ExchangeQuery:
    limit: int = 20
    cursor: str | None = None
    time_from: float | None = None  # unix seconds, inclusive
    time_to: float | None = None
    models: tuple[str, ...] = ()
    user: str | None = None


@dataclass(frozen=True, slots=True)
class ExchangePage:
    exchanges: list[Exchange] = field(default_factory=list)
    next_cursor: str | None = None  # None: this was the last page


def encode_cursor(created_at: float, seq: int) -> str:
    return base64.urlsafe_b64encode(f"{created_at!r}:{seq}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[float, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        created_at, seq = raw.split(":")
        return float(created_at), int(seq)
    except ValueError:  # bad base64, bad UTF-8, wrong shape and bad numbers alike
        raise ServiceError("`cursor` is not one this gateway returned", param="cursor",
                           code="invalid_cursor") from None

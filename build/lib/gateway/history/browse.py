"""Browsing a tenant's exchanges newest first, a page at a time (`History.list_exchanges`).

The cursor is opaque to clients: the last row's own keys, (created_at, exchange id), so the next page
starts right after it even while new exchanges are recorded (they sort before the first page, not into
later ones), and rows with the same created_at are split by id. It names nothing but a row the caller
was just shown: a journal-wide row number would tell a tenant how many exchanges every tenant recorded.
"""

from __future__ import annotations

import base64
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import orjson

from gateway.errors import InvalidRequest

if TYPE_CHECKING:
    from gateway.journal import Exchange

# Longer than any cursor this gateway makes (a timestamp and a 32-character id, base64): decoding
# stops there.
_MAX_CURSOR = 256
_MAX_ID = 64


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


def encode_cursor(last: Exchange) -> str:
    """Where the page after the one ending with `last` starts."""
    return base64.urlsafe_b64encode(orjson.dumps([last.created_at, last.id])).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[float, str]:
    """(created_at, exchange id) of the row a page ended with; InvalidRequest for anything else."""
    if len(cursor) > _MAX_CURSOR:
        raise _invalid()
    try:
        created_at, exchange_id = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, TypeError):  # bad base64 or JSON (infinities too), wrong shape alike
        raise _invalid() from None
    # Numbers SQLite cannot compare as the row's REAL, and ids no row has, are not cursors either.
    if (isinstance(created_at, bool) or not isinstance(created_at, int | float) or not math.isfinite(created_at)
            or not isinstance(exchange_id, str) or not 0 < len(exchange_id) <= _MAX_ID):
        raise _invalid()
    return float(created_at), exchange_id


def _invalid() -> InvalidRequest:
    return InvalidRequest("`cursor` is not one this gateway returned", param="cursor", code="invalid_cursor")

"""Vector stores: one small protocol (`base`), two adapters (`edge`: embedded, `remote`: qdrant-client),
the vectors every point has (`schema`) and what a point holds and a query answers (`points`).

Imports nothing of the project outside this package."""

from gateway.memory.store.base import (
    SearchFilter,
    StoreError,
    StoreLocked,
    StoreUnavailable,
    VectorStore,
)
from gateway.memory.store.points import Hit, PointPayload, StorePoint

__all__ = ["Hit", "PointPayload", "SearchFilter", "StoreError", "StoreLocked", "StorePoint", "StoreUnavailable",
           "VectorStore"]

"""Vector stores: one small protocol (`base`), two adapters (`edge`: embedded, `remote`: qdrant-client)."""

from gateway.memory.store.base import (
    Hit,
    SearchFilter,
    StoreError,
    StoreLocked,
    StoreUnavailable,
    VectorStore,
)

__all__ = ["Hit", "SearchFilter", "StoreError", "StoreLocked", "StoreUnavailable", "VectorStore"]

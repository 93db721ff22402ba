"""The vector store's part of forgetting: every point of a forgotten exchange deleted.

History's forgetter (gateway.history.forget) runs the journal's and the images' parts with or without
memory; when memory is on, the runtime hands it `StorePoints` so that its finisher deletes the points
too, in the same pass and with the same retries.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from gateway.journal import Unfinished
from gateway.memory.points import point_id
from gateway.memory.store.base import VectorStore

# Points per store call. Qdrant Edge holds the GIL for a whole update, freezing the event loop: small
# calls with a pause between keep each freeze short.
STORE_CHUNK = 32
_STORE_PAUSE_S = 0.001


class StorePoints:
    """history.forget.Points over the vector store."""

    def __init__(self, store: VectorStore) -> None:
        self.store = store

    def delete(self, forgotten: Sequence[Unfinished]) -> None:
        """Every point of these exchanges: by id (points.point_id: one per image, or one without), or by
        exchange id for a deletion recorded before the journal counted images (a scan of the store).
        Raises StoreError while the store refuses."""
        by_tenant: dict[str, list[str]] = {}
        unknown: dict[str, list[str]] = {}
        for one in forgotten:
            if one.image_refs is None:
                unknown.setdefault(one.tenant, []).append(one.id)
            else:
                ids = by_tenant.setdefault(one.tenant, [])
                ids += [point_id(one.id, index) for index in range(max(1, one.image_refs))]
        for tenant, ids in by_tenant.items():
            for start in range(0, len(ids), STORE_CHUNK):
                if start:
                    time.sleep(_STORE_PAUSE_S)
                self.store.delete_points(tenant, ids[start:start + STORE_CHUNK])
        for tenant, exchange_ids in unknown.items():
            self.store.delete_exchanges(tenant, exchange_ids)

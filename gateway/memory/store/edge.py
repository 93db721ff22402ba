"""The embedded store: Qdrant's own engine in-process (qdrant-edge-py), one shard in a directory.

No server to run. Facts this adapter is built around (measured, see shared/notes/qdrant.md):
- One process per shard directory: a second open fails on the WAL lock -> `StoreLocked`.
  The WAL stays on (without it a second writer silently corrupted the shard, and an update is only
  durable after flush()); with it an update is durable when `update()` returns.
- Queries release the GIL and may run from threads alongside writes.
- The HNSW index is built only by `optimize()`, which HOLDS THE GIL for its whole run (seconds at 10k
  points, minutes at 100k). Until then, queries are exact brute force in Rust. When to call it is the
  ingest worker's `MaintenancePolicy`, not this adapter's business.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import qdrant_edge as qe

from gateway.memory.points import DIM, VECTOR_NAMES, StorePoint, rfc3339
from gateway.memory.store.base import (
    KEYWORD_FIELDS,
    RRF_K,
    TENANT_FIELD,
    TIME_FIELD,
    Hit,
    SearchFilter,
    StoreError,
    StoreLocked,
    StoreStats,
    Target,
)

# Prefetch depth per vector for fused queries: enough candidates for RRF to reorder.
_PREFETCH_FACTOR = 4


class EdgeStore:
    backend = "edge"

    def __init__(self, path: Path) -> None:
        self.path = path
        self._shard: qe.EdgeShard | None = None
        # Serializes open/close against use; queries and updates themselves run concurrently.
        self._lock = threading.Lock()

    # --- lifecycle -----------------------------------------------------------------------------
    def _config(self) -> qe.EdgeConfig:
        vectors = {name: qe.EdgeVectorParams(size=DIM, distance=qe.Distance.Cosine) for name in VECTOR_NAMES}
        return qe.EdgeConfig(vectors=vectors)

    def _open(self) -> qe.EdgeShard:
        if self._shard is not None:
            return self._shard
        with self._lock:
            if self._shard is not None:
                return self._shard
            self.path.mkdir(parents=True, exist_ok=True)
            exists = (self.path / "wal").exists() or any(self.path.glob("segments*"))
            try:
                shard = qe.EdgeShard.load(str(self.path)) if exists else qe.EdgeShard.create(
                    str(self.path), self._config()
                )
            except Exception as exc:  # the binding raises plain Exception with Rust's message
                if "WAL" in str(exc) and "WouldBlock" in str(exc):
                    raise StoreLocked(
                        f"the embedded vector store at {self.path} is open in another process "
                        "(a running gateway, or another `visionrag` command). Stop that process, or talk "
                        "to the running gateway over HTTP (`--gateway URL`)."
                    ) from None
                raise StoreError(f"cannot open the embedded vector store at {self.path}: {exc}") from exc
            self._shard = shard
            return shard

    def ensure_schema(self) -> None:
        shard = self._open()
        indexed = set(shard.info().payload_schema)
        # Only the tenant index adds links to the HNSW graph (every query filters by tenant); the others
        # serve narrower filters, where Qdrant's planner scans the matching points, and extra links for
        # them would only lengthen optimize(), which freezes the process.
        wanted: list[tuple[str, object]] = [
            (TENANT_FIELD, qe.KeywordIndexParams(is_tenant=True)),
            (TIME_FIELD, qe.DatetimeIndexParams(enable_hnsw=False)),
            *((name, qe.KeywordIndexParams(enable_hnsw=False)) for name in KEYWORD_FIELDS),
        ]
        for name, schema in wanted:
            if name not in indexed:
                shard.update(qe.UpdateOperation.create_field_index(name, schema))  # type: ignore[arg-type]

    def close(self) -> None:
        with self._lock:
            if self._shard is not None:
                self._shard.close()
                self._shard = None

    # --- data ----------------------------------------------------------------------------------
    def upsert(self, points: Sequence[StorePoint]) -> None:
        if not points:
            return
        shard = self._open()
        batch = [qe.Point(p.id, p.vectors, p.payload) for p in points]  # type: ignore[arg-type]
        shard.update(qe.UpdateOperation.upsert_points(batch))

    def query(self, vector: Sequence[float], target: Target, flt: SearchFilter, limit: int) -> list[Hit]:
        shard = self._open()
        query_vector = [float(x) for x in vector]
        edge_filter = _filter(flt)
        if target == "all":
            prefetches = [
                qe.Prefetch(
                    limit=limit * _PREFETCH_FACTOR,
                    query=qe.Query.Nearest(query_vector, using=name),
                    filter=edge_filter,
                )
                for name in VECTOR_NAMES
            ]
            request = qe.QueryRequest(
                limit=limit, prefetches=prefetches, query=qe.Fusion.Rrf(k=RRF_K), with_payload=True
            )
        else:
            request = qe.QueryRequest(
                limit=limit,
                query=qe.Query.Nearest(query_vector, using=target),
                filter=edge_filter,
                with_payload=True,
            )
        return [Hit(str(p.id), float(p.score), dict(p.payload or {})) for p in shard.query(request)]

    def image_mime(self, tenant: str, sha256: str) -> str | None:
        shard = self._open()
        flt = qe.Filter(
            must=[
                qe.FieldCondition(TENANT_FIELD, match=qe.MatchValue(tenant)),
                qe.FieldCondition("image_sha256", match=qe.MatchValue(sha256)),
            ]
        )
        records, _ = shard.scroll(qe.ScrollRequest(limit=1, filter=flt, with_payload=True, with_vector=False))
        return str((records[0].payload or {}).get("image_mime") or "application/octet-stream") if records else None

    def count(self, tenant: str | None = None) -> int:
        shard = self._open()
        flt = None
        if tenant is not None:
            flt = qe.Filter(must=[qe.FieldCondition(TENANT_FIELD, match=qe.MatchValue(tenant))])
        return shard.count(qe.CountRequest(exact=True, filter=flt))

    def stats(self) -> StoreStats:
        info = self._open().info()
        return StoreStats(
            points=info.points_count,
            indexed_vectors=info.indexed_vectors_count,
            backend=self.backend,
            location=str(self.path),
        )

    def optimize(self) -> bool:
        """Build HNSW for segments that need it. Holds the GIL throughout: see the module docstring."""
        return self._open().optimize()


def _filter(flt: SearchFilter) -> qe.Filter:
    must: list[object] = [qe.FieldCondition(TENANT_FIELD, match=qe.MatchValue(flt.tenant))]
    if flt.time_from is not None or flt.time_to is not None:
        must.append(
            qe.FieldCondition(
                TIME_FIELD,
                range=qe.RangeDateTime(
                    gte=rfc3339(flt.time_from) if flt.time_from else None,
                    lte=rfc3339(flt.time_to) if flt.time_to else None,
                ),
            )
        )
    if flt.models:
        must.append(qe.FieldCondition("model", match=qe.MatchAny(list(flt.models))))
    if flt.user is not None:
        must.append(qe.FieldCondition("user", match=qe.MatchValue(flt.user)))
    return qe.Filter(must=must)  # type: ignore[arg-type]

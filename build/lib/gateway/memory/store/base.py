"""The store protocol the rest of memory is written against.

Two adapters implement it: `EdgeStore` (Qdrant's engine in-process, the default) and `RemoteStore`
(qdrant-client: a Qdrant server, Qdrant Cloud, or qdrant-client's local mode in tests).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol, runtime_checkable

from gateway.memory.store.points import Hit, StorePoint
from gateway.memory.store.schema import CLIP_NAMES, SCHEMA, Schema, Sparse, VectorValue

# What a search compares with: one named vector of the schema, or "all" of them fused (see
# search.Searcher). A Literal made from the table, so that validation and the OpenAPI enum follow it.
Target = Literal[SCHEMA.targets]  # type: ignore[valid-type]

# Payload fields with an index: tenant partitions the data (is_tenant), the rest are filters that a
# query uses (/search: model, user; /images: image_sha256). Each index on a field unique per point costs
# RAM per point while its segment is not yet indexed, so a field no query filters on has none.
KEYWORD_FIELDS = ("model", "user", "image_sha256")
# Indexed by earlier versions and no longer needed: dropped when a store opens.
RETIRED_INDEX_FIELDS = ("exchange_id",)
TENANT_FIELD = "tenant"
TIME_FIELD = "time"
# RRF's k (2 is qdrant-client's own default; chosen with bench/memory_quality.py). Rank r of a probe of
# weight w scores 1 / (r / w + k - 1), so a small k keeps the top of each ranking decisive. With k = 60
# (the RRF paper's, meant for fusing dozens of runs) rank 1 and rank 5 score almost alike, a weak
# signal's ranking counts as much as a strong one's, and a weight above 1 mostly narrows the gaps between
# its own probe's top ranks instead of lifting them.
RRF_K = 2


class StoreError(Exception):
    """A store failure that retrying will not fix (bad configuration, schema mismatch)."""


class StoreUnavailable(StoreError):
    """The store cannot be reached or refused the operation for now: retry later."""


class StoreLocked(StoreError):
    """The embedded store's directory is held by another process (its WAL lock)."""


class SchemaMismatch(StoreError):
    """The store was made with other named vectors than the schema (store.schema) lists: it must be
    rebuilt from the journal (`visionrag reindex`)."""

    def __init__(self, location: str, detail: str) -> None:
        super().__init__(
            f"the vector store at {location} was made by an older version with other vectors ({detail}); "
            "rebuild it from the journal with `visionrag reindex` (stop the gateway first)"
        )


@dataclass(slots=True, frozen=True)
class SearchFilter:
    """Every query is scoped to one tenant; the rest narrows it further."""

    tenant: str
    time_from: datetime | None = None
    time_to: datetime | None = None
    models: tuple[str, ...] = ()
    user: str | None = None
    # Exchanges the caller must not get back (retrieval for a chat leaves out its own conversation).
    exclude_exchanges: tuple[str, ...] = ()


@dataclass(slots=True, frozen=True)
class Probe:
    """One ranking: the points nearest to `vector` on the named vector `using`, none below `min_score`.

    `vector` is dense (against a dense or a multi vector: MAX_SIM over its parts) or `Sparse`
    (against a sparse vector). A query of several probes fuses their rankings (Reciprocal Rank Fusion,
    weighted by the schema table's `fusion_weight`) inside the store, so a new signal is one more probe,
    not a new store method.
    """

    vector: Sequence[float] | Sparse
    using: str
    min_score: float | None = None


def query_vector(probe: Probe, schema: Schema = SCHEMA) -> VectorValue | Sequence[float]:
    """The probe's vector as the store compares it: a dense query against a multivector is a
    multivector of one part (MAX_SIM: its best match among the stored parts)."""
    spec = schema.get(probe.using)
    if spec is not None and spec.kind == "multi" and not isinstance(probe.vector, Sparse):
        return [list(probe.vector)]
    return probe.vector


def fusion_weights(probes: Sequence[Probe], schema: Schema = SCHEMA) -> list[float] | None:
    """Each probe's weight in RRF, from the schema table; None when all are 1 (plain RRF)."""
    weights = [spec.fusion_weight if (spec := schema.get(probe.using)) else 1.0 for probe in probes]
    return weights if any(weight != 1.0 for weight in weights) else None


def probes_for(vector: Sequence[float], target: str) -> list[Probe]:
    """One CLIP query vector against one CLIP vector, or against all three (`target="all"`)."""
    names = CLIP_NAMES if target == "all" else (target,)
    return [Probe(vector, name) for name in names]


@dataclass(slots=True)
class StoreStats:
    points: int
    indexed_vectors: int | None  # None where the store does not report it (a server indexes itself)
    backend: str
    location: str
    # The embedded store: a purge left a segment that had an HNSW index without one (see EdgeStore).
    index_wanted: bool = False


@runtime_checkable
class VectorStore(Protocol):
    def ensure_schema(self) -> None:
        """Create the collection/shard and its payload indexes if missing; idempotent."""

    def upsert(self, points: Sequence[StorePoint]) -> None:
        """Write points; durable (acknowledged by the store) when this returns."""

    def query(self, probes: Sequence[Probe], flt: SearchFilter, limit: int) -> list[Hit]:
        """One probe: its nearest points, scored by similarity. Several: their rankings fused with RRF
        (k = RRF_K, each probe weighted by `fusion_weights`; scored by RRF). Scoped by `flt`; an empty
        list of probes finds nothing."""

    def image_vector(self, tenant: str, sha256: str) -> list[float] | None:
        """The CLIP vector stored for this image (content-addressed: the same bytes, the same vector) on
        one of `tenant`'s points, else None."""

    def count(self, tenant: str | None = None) -> int: ...

    def stats(self) -> StoreStats: ...

    def optimize(self) -> bool:
        """Build/refresh indexes now. May block for long; see `ingest.MaintenancePolicy`."""

    def recreate(self) -> None:
        """Drop every point and the old layout, and create the store with this version's schema
        (`visionrag reindex`, which then refills it from the journal). Works on a store that
        `ensure_schema` refuses with SchemaMismatch."""

    def close(self) -> None: ...

    def delete_exchanges(self, tenant: str, exchange_ids: Sequence[str]) -> None:
        """Delete every point of these exchanges of `tenant` (forgetting); durable when this returns.

        Qdrant only marks deleted points: their vectors (the BM25 one is a hashed bag of the exchange's
        words) and payload stay in its files until a vacuum, their upserts in its WAL until it rotates.
        `purge_deleted` is what removes them."""

    def delete_points(self, tenant: str, point_ids: Sequence[str]) -> None:
        """Delete those of these points that are `tenant`'s; durable when this returns. Found by id, where
        `delete_exchanges` filters on a payload field with no index: Qdrant Edge scans every point (and
        holds the GIL meanwhile) for that."""

    def purge_pending_since(self) -> float | None:
        """Unix time of the oldest deletion whose data may still be in the store's files and that
        `purge_deleted` would remove; None when there is none (or the store purges by itself)."""

    def purge_deleted(self) -> bool:
        """Rewrite the store's files without what deletions left in them (see `delete_exchanges`).
        May block for long and make the store unavailable meanwhile (see gateway.memory.purge, whose
        scheduler calls it). Returns whether it purged: False when nothing was pending, or when it cannot now
        (`purge_pending_since` then still answers)."""

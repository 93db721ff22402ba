"""A Qdrant server or Qdrant Cloud through qdrant-client (set VISIONRAG_QDRANT_URL / _API_KEY).

The same adapter runs against qdrant-client's local mode (`location=":memory:"` or `path=`), which
takes the same calls as a server: that is how it is tested here, where no server can run. Local mode
is a brute-force test vehicle (payload indexes ignored, one process per path, not thread-safe), never
the embedded default: that is `EdgeStore`.

A server builds its HNSW index itself in the background as data grows (its optimizers), so
`optimize()` has nothing to do here. It also purges deleted points by itself: collections get optimizer
settings that vacuum a segment as soon as it holds one (`collection_layout`), so `purge_deleted()` has
nothing to do either. What a server keeps after a deletion, and for how long: deploy/qdrant-cloud.md.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import httpx
from qdrant_client import QdrantClient, models
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from gateway.memory.store.base import (
    KEYWORD_FIELDS,
    RETIRED_INDEX_FIELDS,
    RRF_K,
    TENANT_FIELD,
    TIME_FIELD,
    Probe,
    SchemaMismatch,
    SearchFilter,
    StoreError,
    StoreStats,
    StoreUnavailable,
    fusion_weights,
    query_vector,
)
from gateway.memory.store.points import Hit, StorePoint, rfc3339
from gateway.memory.store.schema import SCHEMA, Schema, Sparse, VectorValue

_PREFETCH_FACTOR = 4
# Statuses that mean "try again later" rather than "this request is wrong".
_TRANSIENT_STATUS = {408, 425, 429, 500, 502, 503, 504}


class RemoteStore:
    backend = "qdrant-client"

    def __init__(
        self,
        collection: str,
        *,
        url: str | None = None,
        api_key: str | None = None,
        location: str | None = None,
        path: str | None = None,
        timeout_s: float = 10.0,
        schema: Schema = SCHEMA,
    ) -> None:
        """`url` (+ `api_key`) for a server/Cloud; `location=":memory:"` or `path` for local mode (tests).
        `schema`: the collection's named vectors (another than SCHEMA is for tests of the table itself)."""
        self.collection = collection
        self.schema = schema
        self.local = url is None
        self.location = url or path or location or ":memory:"
        if url is not None:
            # No version probe at construction: it would block start-up on the network when the server is down.
            self._client = QdrantClient(
                url=url, api_key=api_key, timeout=int(max(1, timeout_s)), check_compatibility=False
            )
        elif path is not None:
            self._client = QdrantClient(path=path)
        else:
            self._client = QdrantClient(location=location or ":memory:")
        # Local mode is not thread-safe (shared use corrupted it); a server client is, but the lock costs
        # nothing measurable next to a network round trip, so it is always taken.
        self._lock = threading.Lock()
        self._schema_ready = False

    @contextmanager
    def _call(self, what: str) -> Iterator[None]:
        """Map qdrant-client's failures onto the store protocol's two kinds: retry later, or give up."""
        try:
            with self._lock:
                yield
        except UnexpectedResponse as exc:
            if exc.status_code in _TRANSIENT_STATUS:
                raise StoreUnavailable(f"Qdrant {what} failed with HTTP {exc.status_code}") from exc
            raise StoreError(f"Qdrant {what} failed with HTTP {exc.status_code}: {exc.content[:300]!r}") from exc
        except (ResponseHandlingException, httpx.TransportError, ConnectionError, TimeoutError) as exc:
            raise StoreUnavailable(f"Qdrant at {self.location} is unreachable ({what}): {exc}") from exc

    def ensure_schema(self) -> None:
        if self._schema_ready:
            return
        with self._call("create collection"):
            if not self._client.collection_exists(self.collection):
                self._client.create_collection(self.collection, **collection_layout(self.schema))
            info = self._client.get_collection(self.collection)
            _check_vectors(info, f"{self.location} (collection {self.collection})", self.schema)
            if not self.local and _vacuums_late(info):
                # Made by an earlier version with Qdrant's defaults. The server rewrites each segment that
                # holds a deleted point once, and leaves the others alone. Local mode ignores these.
                self._client.update_collection(self.collection, optimizers_config=VACUUM)
            existing = info.payload_schema or {}
            for name, schema in payload_indexes():
                if name not in existing and not self.local:
                    # Local mode ignores payload indexes (and warns about each): skip them there.
                    self._client.create_payload_index(self.collection, name, field_schema=schema, wait=True)
            for name in RETIRED_INDEX_FIELDS:
                if name in existing and not self.local:
                    self._client.delete_payload_index(self.collection, name, wait=True)
        self._schema_ready = True

    def close(self) -> None:
        with self._lock:
            self._client.close()

    def upsert(self, points: Sequence[StorePoint]) -> None:
        if not points:
            return
        self.ensure_schema()
        batch = [models.PointStruct(id=p.id, vector={k: _vector(v) for k, v in p.vectors.items()},  # type: ignore[misc]
                                    payload=p.payload) for p in points]
        with self._call("upsert"):
            # wait=True: returns once the server applied it, so the journal is marked only after that.
            self._client.upsert(self.collection, points=batch, wait=True)

    def query(self, probes: Sequence[Probe], flt: SearchFilter, limit: int) -> list[Hit]:
        if not probes:
            return []
        self.ensure_schema()
        query_filter = _filter(flt)
        with self._call("query"):
            if len(probes) == 1:
                probe = probes[0]
                response = self._client.query_points(
                    self.collection,
                    query=_vector(query_vector(probe, self.schema)),  # type: ignore[arg-type]
                    using=probe.using,
                    query_filter=query_filter,
                    score_threshold=probe.min_score,
                    limit=limit,
                    with_payload=True,
                )
            else:
                response = self._client.query_points(
                    self.collection,
                    prefetch=[
                        models.Prefetch(
                            query=_vector(query_vector(probe, self.schema)),  # type: ignore[arg-type]
                            using=probe.using,
                            limit=limit * _PREFETCH_FACTOR,
                            filter=query_filter,
                            score_threshold=probe.min_score,
                        )
                        for probe in probes
                    ],
                    query=models.RrfQuery(rrf=models.Rrf(k=RRF_K, weights=fusion_weights(probes, self.schema))),
                    limit=limit,
                    with_payload=True,
                )
        return [Hit.decode(p.id, p.score, p.payload) for p in response.points]

    def image_vector(self, tenant: str, sha256: str) -> list[float] | None:
        self.ensure_schema()
        with self._call("scroll"):
            records, _ = self._client.scroll(
                self.collection, scroll_filter=_image_filter(tenant, sha256), limit=1, with_payload=False,
                with_vectors=["image"],
            )
        vectors = records[0].vector if records else None
        found = vectors.get("image") if isinstance(vectors, dict) else None
        return list(found) if found else None

    def count(self, tenant: str | None = None) -> int:
        self.ensure_schema()
        flt = None
        if tenant is not None:
            flt = models.Filter(must=[models.FieldCondition(key=TENANT_FIELD, match=models.MatchValue(value=tenant))])
        with self._call("count"):
            return self._client.count(self.collection, count_filter=flt, exact=True).count

    def stats(self) -> StoreStats:
        self.ensure_schema()
        with self._call("collection info"):
            info = self._client.get_collection(self.collection)
        return StoreStats(
            points=info.points_count or 0,
            indexed_vectors=None if self.local else info.indexed_vectors_count,
            backend=self.backend,
            location=self.location if self.local else _redact(self.location),
        )

    def optimize(self) -> bool:
        return False  # the server's own optimizers index in the background

    def purge_pending_since(self) -> float | None:
        return None  # the server's vacuum optimizer purges by itself (VACUUM)

    def purge_deleted(self) -> bool:
        return False

    def recreate(self) -> None:
        with self._call("recreate collection"):
            if self._client.collection_exists(self.collection):
                self._client.delete_collection(self.collection)
        self._schema_ready = False
        self.ensure_schema()

    def delete_exchanges(self, tenant: str, exchange_ids: Sequence[str]) -> None:
        """Delete every point of these exchanges of `tenant`; applied when this returns (wait=True)."""
        if exchange_ids:
            self._delete(models.Filter(must=[
                models.FieldCondition(key=TENANT_FIELD, match=models.MatchValue(value=tenant)),
                models.FieldCondition(key="exchange_id", match=models.MatchAny(any=list(exchange_ids))),
            ]))

    def delete_points(self, tenant: str, point_ids: Sequence[str]) -> None:
        if point_ids:
            self._delete(models.Filter(must=[
                models.HasIdCondition(has_id=list(point_ids)),
                models.FieldCondition(key=TENANT_FIELD, match=models.MatchValue(value=tenant)),
            ]))

    def _delete(self, flt: models.Filter) -> None:
        self.ensure_schema()
        with self._call("delete"):
            self._client.delete(self.collection, points_selector=models.FilterSelector(filter=flt), wait=True)


# Vacuum a segment as soon as it holds one deleted point (Qdrant's default waits for a fifth of it), so a
# deletion's data leaves the server's segment files once that rewrite is done. 100 is the least the
# server accepts: a segment with fewer points keeps deleted ones until it is merged into a larger one.
VACUUM = models.OptimizersConfigDiff(deleted_threshold=0.0, vacuum_min_vector_number=100)
# WAL segments of 1 MB instead of 32: the server deletes a WAL segment (and the deleted points' upserts
# in it) only once it is full and flushed, so smaller ones are gone sooner. Only settable at creation.
WAL = models.WalConfigDiff(wal_capacity_mb=1)
# The schema's words for how vectors compare, in the server's.
_DISTANCES = {"cosine": models.Distance.COSINE}
_MODIFIERS = {"idf": models.Modifier.IDF, None: None}


def collection_layout(schema: Schema = SCHEMA) -> dict[str, Any]:
    """How a new collection keeps RAM per exchange small (deploy/qdrant-cloud.md, "Sizing"): float32
    originals and payload on disk, int8 copies in RAM for scoring (rescored from the originals), the
    HNSW graph in RAM; and how it lets go of deleted points (VACUUM, WAL). An existing collection keeps
    its layout: changing it makes the server rebuild every segment, an operator's decision (the PATCH in
    that document)."""
    max_sim = models.MultiVectorConfig(comparator=models.MultiVectorComparator.MAX_SIM)
    return {
        "vectors_config": {
            spec.name: models.VectorParams(size=spec.size, distance=_DISTANCES[spec.distance], on_disk=True,
                                           multivector_config=max_sim if spec.kind == "multi" else None)
            for spec in schema if spec.kind != "sparse"
        },
        "sparse_vectors_config": {
            spec.name: models.SparseVectorParams(modifier=_MODIFIERS[spec.modifier])
            for spec in schema if spec.kind == "sparse"
        },
        "quantization_config": models.ScalarQuantization(
            scalar=models.ScalarQuantizationConfig(type=models.ScalarType.INT8, quantile=0.99, always_ram=True)
        ),
        "hnsw_config": models.HnswConfigDiff(on_disk=False),
        "on_disk_payload": True,
        "optimizers_config": VACUUM,
        "wal_config": WAL,
    }


def _vacuums_late(info: models.CollectionInfo) -> bool:
    config = info.config.optimizer_config
    return (config.deleted_threshold, config.vacuum_min_vector_number) != (
        VACUUM.deleted_threshold, VACUUM.vacuum_min_vector_number)


def payload_indexes() -> list[tuple[str, Any]]:
    """The payload indexes a collection gets (deploy/qdrant-cloud.md lists them). As in EdgeStore: only
    the tenant index adds HNSW links; the others serve narrower filters."""
    keyword = models.KeywordIndexType.KEYWORD
    return [
        (TENANT_FIELD, models.KeywordIndexParams(type=keyword, is_tenant=True)),
        (TIME_FIELD, models.DatetimeIndexParams(type=models.DatetimeIndexType.DATETIME, enable_hnsw=False)),
        *((name, models.KeywordIndexParams(type=keyword, enable_hnsw=False)) for name in KEYWORD_FIELDS),
    ]


def _check_vectors(info: models.CollectionInfo, where: str, schema: Schema) -> None:
    """An existing collection must have exactly the schema's named vectors (of the same kinds)."""
    params = info.config.params
    dense = params.vectors if isinstance(params.vectors, dict) else {"": params.vectors}
    have = {name: ("multi" if p.multivector_config else "dense") for name, p in dense.items() if p}
    have.update({name: "sparse" for name in (params.sparse_vectors or {})})
    want = {spec.name: spec.kind for spec in schema}
    if have != want:
        raise SchemaMismatch(where, f"has {sorted(have)}, this version needs {sorted(want)}")


def _vector(value: VectorValue | Sequence[float]) -> object:
    if isinstance(value, Sparse):
        return models.SparseVector(indices=list(value.indices), values=list(value.values))
    if value and isinstance(value[0], list):
        return [[float(x) for x in part] for part in value]  # type: ignore[union-attr]
    return [float(x) for x in value]  # type: ignore[union-attr]


def _redact(url: str) -> str:
    return httpx.URL(url).copy_with(username=None, password=None).__str__()


def _filter(flt: SearchFilter) -> models.Filter:
    must: list[Any] = [models.FieldCondition(key=TENANT_FIELD, match=models.MatchValue(value=flt.tenant))]
    if flt.time_from is not None or flt.time_to is not None:
        must.append(
            models.FieldCondition(
                key=TIME_FIELD,
                range=models.DatetimeRange(
                    gte=rfc3339(flt.time_from) if flt.time_from else None,
                    lte=rfc3339(flt.time_to) if flt.time_to else None,
                ),
            )
        )
    if flt.models:
        must.append(models.FieldCondition(key="model", match=models.MatchAny(any=list(flt.models))))
    if flt.user is not None:
        must.append(models.FieldCondition(key="user", match=models.MatchValue(value=flt.user)))
    must_not: list[Any] = []
    if flt.exclude_exchanges:
        must_not.append(
            models.FieldCondition(key="exchange_id", match=models.MatchAny(any=list(flt.exclude_exchanges)))
        )
    return models.Filter(must=must, must_not=must_not or None)


def _image_filter(tenant: str, sha256: str) -> models.Filter:
    return models.Filter(must=[models.FieldCondition(key=TENANT_FIELD, match=models.MatchValue(value=tenant)),
                               models.FieldCondition(key="image_sha256", match=models.MatchValue(value=sha256))])

"""The embedded store: Qdrant's own engine in-process (qdrant-edge-py), one shard in a directory.

No server to run. Facts this adapter is built around (measured, see shared/notes/qdrant.md):
- One process per shard directory: a second open fails on the WAL lock -> `StoreLocked`.
  The WAL stays on (without it a second writer silently corrupted the shard, and an update is only
  durable after flush()); with it an update is durable when `update()` returns.
- Queries release the GIL and may run from threads alongside writes.
- The HNSW index is built only by the shard's `optimize()`, which HOLDS THE GIL for its whole run
  (~10-20 s at 10k points, ~6 min at 100k on 2 cores). Until then, queries are exact brute force in Rust.
  So `optimize()` here never runs it in this process: it closes the shard, lets a child process (niced,
  killed with its parent) open it and build the index, and reopens it. Meanwhile the store answers
  `StoreUnavailable` (ingest backs off, the journal absorbs chats, /search answers 503) but nothing in
  this process freezes. When to do it is the ingest worker's `MaintenancePolicy`.
- RAM per stored exchange: the float32 originals (6 KB for three 512-d vectors) and the payload stay in
  their files (`Memory.Cold`); indexed segments search int8 copies kept in RAM (~1.5 KB, rescored from
  the originals) and the HNSW graph. Pages of the files that writes, the WAL replay or brute-force
  searches touch stay mapped into this process, so every `_RELEASE_EVERY_POINTS` points (and after
  each open) they are handed back to the kernel (`pages.release_mapped`).
- A shard made by an older version (float vectors in RAM) opens with this layout written into its
  config: its existing segments keep theirs until `optimize()` rebuilds them, new ones get this one.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import qdrant_edge as qe

from gateway.memory.points import StorePoint, rfc3339
from gateway.memory.schema import SCHEMA, Sparse, VectorValue
from gateway.memory.store import pages
from gateway.memory.store.base import (
    KEYWORD_FIELDS,
    RETIRED_INDEX_FIELDS,
    RRF_K,
    TENANT_FIELD,
    TIME_FIELD,
    Hit,
    Probe,
    SchemaMismatch,
    SearchFilter,
    StoreError,
    StoreLocked,
    StoreStats,
    StoreUnavailable,
    fusion_weights,
    query_vector,
)

# Prefetch depth per vector for fused queries: enough candidates for RRF to reorder.
_PREFETCH_FACTOR = 4
# Points written between two hand-backs of mapped pages. Each point writes its vectors, its payload and
# a WAL record into mapped files, so this bounds the RSS that ingest holds on to, at the cost of one
# pass over /proc/self/maps per this many points.
_RELEASE_EVERY_POINTS = 512


def _kept_resident(path: str) -> bool:
    """Mapped files that stay in RAM: the HNSW graph and the int8 vectors every indexed search walks.
    The rest goes back: originals, payload, WAL, and the payload indexes, whose files are mostly
    preallocated space that a load maps in whole; a filter faults back the few pages it reads."""
    return "/vector_index-" in path or "quantized" in path


class EdgeStore:
    backend = "edge"

    def __init__(self, path: Path, *, maintenance_nice: int = 10) -> None:
        self.path = path
        self.maintenance_nice = maintenance_nice
        self._shard: qe.EdgeShard | None = None
        # Serializes open/close against use; queries and updates themselves run concurrently, counted in
        # `_active` so that maintenance can wait for them before it closes the shard.
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._active = 0
        self._maintenance = False
        self._closed = False
        self._unreleased_points = 0

    # --- lifecycle -----------------------------------------------------------------------------
    @staticmethod
    def _config() -> qe.EdgeConfig:
        max_sim = qe.MultiVectorConfig(qe.MultiVectorComparator.MaxSim)
        vectors = {
            spec.name: qe.EdgeVectorParams(size=spec.size, distance=qe.Distance.Cosine, memory=qe.Memory.Cold,
                                           multivector_config=max_sim if spec.kind == "multi" else None)
            for spec in SCHEMA if spec.kind != "sparse"
        }
        # IDF: the shard keeps each term's document frequency, so BM25 vectors carry term frequencies only.
        sparse = {spec.name: qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf)
                  for spec in SCHEMA if spec.kind == "sparse"}
        # quantile 0.99: int8 bounds that ignore the extreme 1% of values, as in Qdrant's docs; results
        # are rescored with the float originals, so the bounds cost precision only before rescoring.
        int8 = qe.ScalarQuantizationConfig(qe.ScalarType.Int8, quantile=0.99, memory=qe.Memory.Pinned)
        return qe.EdgeConfig(vectors=vectors, sparse_vectors=sparse, payload_memory=qe.Memory.Cold,
                             quantization_config=int8)

    def _open_locked(self) -> qe.EdgeShard:
        """Open (or create) the shard; the caller holds `_lock`. Reopens after close() if used again."""
        if self._shard is not None:
            return self._shard
        self._closed = False
        self.path.mkdir(parents=True, exist_ok=True)
        exists = (self.path / "wal").exists() or any(self.path.glob("segments*"))
        try:
            # load() with a config checks it against the shard and writes it: how older shards get
            # this memory layout (for the segments written or rebuilt from now on).
            shard = (qe.EdgeShard.load if exists else qe.EdgeShard.create)(str(self.path), self._config())
        except Exception as exc:  # the binding raises plain Exception with Rust's message
            if "Incompatible configs" in str(exc):
                raise SchemaMismatch(str(self.path), str(exc).split("Incompatible configs:")[-1].strip()) from None
            if "WAL" in str(exc) and "WouldBlock" in str(exc):
                raise StoreLocked(
                    f"the embedded vector store at {self.path} is open in another process "
                    "(a running gateway, or another `visionrag` command). Stop that process, or talk "
                    "to the running gateway over HTTP (`--gateway URL`)."
                ) from None
            raise StoreError(f"cannot open the embedded vector store at {self.path}: {exc}") from exc
        self._shard = shard
        self.release_memory()  # what loading and the WAL replay mapped in
        return shard

    def release_memory(self) -> int:
        """Hand the kernel back the pages of the shard's files mapped into this process (see the module
        docstring), and the heap the engine's writes freed; safe at any time, since it only evicts.
        Returns the number of mappings advised."""
        self._unreleased_points = 0
        advised = pages.release_mapped(self.path, keep=_kept_resident)
        pages.trim_heap()
        return advised

    @contextmanager
    def _use(self) -> Iterator[qe.EdgeShard]:
        with self._lock:
            if self._maintenance:
                raise StoreUnavailable("the embedded vector store is being indexed; retry shortly")
            shard = self._open_locked()
            self._active += 1
        try:
            yield shard
        finally:
            with self._lock:
                self._active -= 1
                if self._active == 0:
                    self._idle.notify_all()

    def ensure_schema(self) -> None:
        with self._use() as shard:
            self._ensure_indexes(shard)

    def _ensure_indexes(self, shard: qe.EdgeShard) -> None:
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
        for name in RETIRED_INDEX_FIELDS:
            if name in indexed:
                shard.update(qe.UpdateOperation.delete_field_index(name))

    def close(self) -> None:
        with self._lock:
            self._closed = True
            while self._active:
                self._idle.wait()
            if self._shard is not None:
                self._shard.close()
                self._shard = None

    # --- data ----------------------------------------------------------------------------------
    def upsert(self, points: Sequence[StorePoint]) -> None:
        if not points:
            return
        batch = [qe.Point(p.id, {k: _vector(v) for k, v in p.vectors.items()}, p.payload)  # type: ignore[arg-type]
                 for p in points]
        with self._use() as shard:
            shard.update(qe.UpdateOperation.upsert_points(batch))
        self._unreleased_points += len(batch)
        if self._unreleased_points >= _RELEASE_EVERY_POINTS:
            self.release_memory()

    def query(self, probes: Sequence[Probe], flt: SearchFilter, limit: int) -> list[Hit]:
        if not probes:
            return []
        edge_filter = _filter(flt)

        def nearest(probe: Probe) -> qe.Query:
            return qe.Query.Nearest(_vector(query_vector(probe)), using=probe.using)  # type: ignore[arg-type]

        if len(probes) == 1:
            request = qe.QueryRequest(
                limit=limit,
                query=nearest(probes[0]),
                filter=edge_filter,
                score_threshold=probes[0].min_score,
                with_payload=True,
            )
        else:
            prefetches = [
                qe.Prefetch(
                    limit=limit * _PREFETCH_FACTOR,
                    query=nearest(probe),
                    filter=edge_filter,
                    score_threshold=probe.min_score,
                )
                for probe in probes
            ]
            request = qe.QueryRequest(
                limit=limit,
                prefetches=prefetches,
                query=qe.Fusion.Rrf(k=RRF_K, weights=fusion_weights(probes)),
                with_payload=True,
            )
        with self._use() as shard:
            found = shard.query(request)
        return [Hit(str(p.id), float(p.score), dict(p.payload or {})) for p in found]

    def image_vector(self, tenant: str, sha256: str) -> list[float] | None:
        with self._use() as shard:
            records, _ = shard.scroll(qe.ScrollRequest(limit=1, filter=_image_filter(tenant, sha256),
                                                       with_payload=False, with_vector=["image"]))
        vectors = records[0].vector if records else None
        found = vectors.get("image") if isinstance(vectors, dict) else None
        return list(found) if found else None

    def image_mime(self, tenant: str, sha256: str) -> str | None:
        with self._use() as shard:
            records, _ = shard.scroll(qe.ScrollRequest(limit=1, filter=_image_filter(tenant, sha256),
                                                       with_payload=True, with_vector=False))
        return str((records[0].payload or {}).get("image_mime") or "application/octet-stream") if records else None

    def count(self, tenant: str | None = None) -> int:
        flt = None
        if tenant is not None:
            flt = qe.Filter(must=[qe.FieldCondition(TENANT_FIELD, match=qe.MatchValue(tenant))])
        with self._use() as shard:
            return shard.count(qe.CountRequest(exact=True, filter=flt))

    def stats(self) -> StoreStats:
        with self._use() as shard:
            info = shard.info()
        return StoreStats(
            points=info.points_count,
            indexed_vectors=info.indexed_vectors_count,
            backend=self.backend,
            location=str(self.path),
        )

    def optimize(self) -> bool:
        """Build HNSW for the segments that need it, in a child process (see the module docstring).

        Blocks the calling thread (not the process) until done; the store is unavailable meanwhile.
        """
        with self._lock:
            if self._maintenance:
                return False
            self._maintenance = True  # new operations now fail fast with StoreUnavailable
            while self._active:
                self._idle.wait()
            if self._shard is not None:
                self._shard.close()
                self._shard = None
        try:
            result = subprocess.run(
                [sys.executable, "-m", "gateway.memory.store.edge", "optimize", str(self.path),
                 str(os.getpid()), str(self.maintenance_nice)],
                capture_output=True, text=True, check=False,
            )
            if result.returncode != 0:
                raise StoreError(f"indexing the embedded store failed: {result.stderr.strip()[-500:]}")
            return result.stdout.strip().endswith("True")
        finally:
            with self._lock:
                self._maintenance = False
                if not self._closed:  # closed meanwhile (shutdown): leave it closed
                    self._open_locked()

    def recreate(self) -> None:
        import shutil
        import time

        self.close()
        if self.path.exists():
            try:  # opened as it is (no config to check): only to learn whether another process holds it
                qe.EdgeShard.load(str(self.path), None).close()
            except Exception as exc:
                if "WouldBlock" in str(exc):
                    raise StoreLocked(f"the embedded vector store at {self.path} is open in another process "
                                      "(a running gateway): stop it first") from None
                raise StoreError(f"cannot open the embedded vector store at {self.path}: {exc}") from exc
            # Moved aside first: a crash mid-way leaves the old shard whole, never half deleted.
            aside = self.path.with_name(f"{self.path.name}.old-{int(time.time())}")
            self.path.rename(aside)
            shutil.rmtree(aside)
        with self._lock:
            self._open_locked()

    def optimize_here(self) -> bool:
        """optimize() in THIS process: for a process that serves nothing else (the CLI, the child)."""
        with self._use() as shard:
            return shard.optimize()

    def delete_exchanges(self, tenant: str, exchange_ids: Sequence[str]) -> None:
        """Delete every point of these exchanges of `tenant`; durable (in the WAL) when this returns.

        The engine only marks deleted points: their vectors and payload stay in the segment files (and
        the WAL) until a vacuum rewrites them. That is why no payload holds an exchange's text
        (gateway.memory.texts): what stays is vectors and ids, never the question or the answer.
        """
        if not exchange_ids:
            return
        flt = qe.Filter(must=[qe.FieldCondition(TENANT_FIELD, match=qe.MatchValue(tenant)),
                              qe.FieldCondition("exchange_id", match=qe.MatchAny(list(exchange_ids)))])
        with self._use() as shard:
            shard.update(qe.UpdateOperation.delete_points_by_filter(flt))

    def delete_points(self, tenant: str, point_ids: Sequence[str]) -> None:
        if not point_ids:
            return
        flt = qe.Filter(must=[qe.HasIdCondition(set(point_ids)),
                              qe.FieldCondition(TENANT_FIELD, match=qe.MatchValue(tenant))])
        with self._use() as shard:
            shard.update(qe.UpdateOperation.delete_points_by_filter(flt))


def _become_maintenance_child(parent_pid: int, nice: int) -> None:
    """In the indexing child: lower its priority, and die with the gateway (so a restarted gateway does
    not find the shard locked by an orphaned indexer). Done here, not in a preexec_fn, which is unsafe
    in a threaded parent."""
    import ctypes
    import signal

    if nice > 0:
        os.nice(nice)
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass  # not Linux: the child outlives a killed parent until it finishes
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        raise SystemExit("the gateway that started this indexer is gone")


def _vector(value: VectorValue | Sequence[float]) -> object:
    if isinstance(value, Sparse):
        return qe.SparseVector(indices=list(value.indices), values=list(value.values))
    if value and isinstance(value[0], list):
        return [[float(x) for x in part] for part in value]  # type: ignore[union-attr]
    return [float(x) for x in value]  # type: ignore[union-attr]


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
    must_not: list[object] = []
    if flt.exclude_exchanges:
        must_not.append(qe.FieldCondition("exchange_id", match=qe.MatchAny(list(flt.exclude_exchanges))))
    return qe.Filter(must=must, must_not=must_not or None)  # type: ignore[arg-type]


def _image_filter(tenant: str, sha256: str) -> qe.Filter:
    return qe.Filter(must=[qe.FieldCondition(TENANT_FIELD, match=qe.MatchValue(tenant)),
                           qe.FieldCondition("image_sha256", match=qe.MatchValue(sha256))])


if __name__ == "__main__":
    # `python -m gateway.memory.store.edge optimize PATH`: the maintenance child (see EdgeStore.optimize).
    if len(sys.argv) == 5 and sys.argv[1] == "optimize":
        _become_maintenance_child(int(sys.argv[3]), int(sys.argv[4]))
        child = EdgeStore(Path(sys.argv[2]))
        print(child.optimize_here())
        child.close()
    else:
        raise SystemExit("usage: python -m gateway.memory.store.edge optimize SHARD_PATH PARENT_PID NICE")

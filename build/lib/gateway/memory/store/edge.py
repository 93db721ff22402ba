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
- Deleting only marks points: their vectors (the BM25 one is a hashed bag of the exchange's words) and
  payload stay in the segment files, and their upserts in the WAL, which drops a file only once it is
  full and a newer one is. So a deletion leaves a marker file, and `purge_deleted()` (run by
  `gateway.memory.purge` within a set time) rewrites just the segments that hold deleted points and
  rotates the WAL past their records: in a child process, like `optimize()`, and without building an
  index, so it costs a rewrite of those segments instead of minutes of HNSW (bench/memory_purge.py).
  An indexed segment it rewrites is searched by brute force until the next index build, which
  `stats().index_wanted` asks the ingest worker's maintenance for.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

import qdrant_edge as qe

from gateway.memory.store import pages
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
    StoreLocked,
    StoreStats,
    StoreUnavailable,
    fusion_weights,
    query_vector,
)
from gateway.memory.store.points import Hit, StorePoint, rfc3339
from gateway.memory.store.schema import SCHEMA, Schema, Sparse, VectorValue

# Prefetch depth per vector for fused queries: enough candidates for RRF to reorder.
_PREFETCH_FACTOR = 4
# Points written between two hand-backs of mapped pages. Each point writes its vectors, its payload and
# a WAL record into mapped files, so this bounds the RSS that ingest holds on to, at the cost of one
# pass over /proc/self/maps per this many points.
_RELEASE_EVERY_POINTS = 512

# What the maintenance child does: build indexes (and purge), or only purge (see the module docstring).
Task = Literal["optimize", "purge"]
# Present in the shard directory while a deletion may have left data in its files; its mtime is the
# first such deletion's time.
_PURGE_MARKER = "purge-pending"
# Present while a purge has left a segment that had an HNSW index without one (searched by brute force):
# the maintenance policy then builds indexes at its next quiet time, however few points are new.
_INDEX_MARKER = "index-wanted"
# WAL segment files of 1 MiB instead of Qdrant's 32 MiB: a purge rotates the WAL with records that
# fill a segment (_forget_wal_history), so this is what a purge writes to it. One closed segment kept:
# the engine's minimum.
_WAL_OPTIONS = {"segment_capacity": 1 << 20, "segment_queue_len": 0, "retain_closed": 1}
_MAX_FILLER_BYTES = 64 << 20
_MAX_FILLERS = 32
_NEVER = 1 << 40  # an optimizer threshold (in KB, or segments) that no shard reaches
# The schema's words for how vectors compare, in the engine's.
_DISTANCES = {"cosine": qe.Distance.Cosine}
_MODIFIERS = {"idf": qe.Modifier.Idf, None: None}


def _kept_resident(path: str) -> bool:
    """Mapped files that stay in RAM: the HNSW graph and the int8 vectors every indexed search walks.
    The rest goes back: originals, payload, WAL, and the payload indexes, whose files are mostly
    preallocated space that a load maps in whole; a filter faults back the few pages it reads."""
    return "/vector_index-" in path or "quantized" in path


class EdgeStore:
    backend = "edge"

    def __init__(self, path: Path, *, maintenance_nice: int = 10, schema: Schema = SCHEMA) -> None:
        """`schema`: the named vectors of the shard. Only SCHEMA can be optimized or purged (the
        maintenance child opens the shard with it); another is for tests of the table itself."""
        self.path = path
        self.schema = schema
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
    def _config(task: Task | None = None, schema: Schema = SCHEMA) -> qe.EdgeConfig:
        """The shard's settings; `task`'s optimizer settings for the maintenance child (every open
        passes them all, which replaces what an earlier task wrote into the shard's config)."""
        max_sim = qe.MultiVectorConfig(qe.MultiVectorComparator.MaxSim)
        vectors = {
            spec.name: qe.EdgeVectorParams(size=spec.size, distance=_DISTANCES[spec.distance], memory=qe.Memory.Cold,
                                           multivector_config=max_sim if spec.kind == "multi" else None)
            for spec in schema if spec.kind != "sparse"
        }
        # IDF: the shard keeps each term's document frequency, so BM25 vectors carry term frequencies only.
        sparse = {spec.name: qe.EdgeSparseVectorParams(modifier=_MODIFIERS[spec.modifier])
                  for spec in schema if spec.kind == "sparse"}
        # quantile 0.99: int8 bounds that ignore the extreme 1% of values, as in Qdrant's docs; results
        # are rescored with the float originals, so the bounds cost precision only before rescoring.
        int8 = qe.ScalarQuantizationConfig(qe.ScalarType.Int8, quantile=0.99, memory=qe.Memory.Pinned)
        # Every optimize vacuums each segment that holds a deleted point (Qdrant's default waits until a
        # fifth of a segment is deleted) and no other. A purge does only that: no index build and no
        # merge, either of which could rebuild a large segment's HNSW for minutes.
        purge = _NEVER if task == "purge" else None
        optimizers = qe.EdgeOptimizersConfig(deleted_threshold=0.0, vacuum_min_vector_number=1,
                                             indexing_threshold=purge, default_segment_number=purge)
        return qe.EdgeConfig(vectors=vectors, sparse_vectors=sparse, payload_memory=qe.Memory.Cold,
                             quantization_config=int8, optimizers=optimizers)

    def _open_locked(self, task: Task | None = None) -> qe.EdgeShard:
        """Open (or create) the shard; the caller holds `_lock`. Reopens after close() if used again."""
        if self._shard is not None:
            return self._shard
        self._closed = False
        self.path.mkdir(parents=True, exist_ok=True)
        new = not (self.path / "edge_config.json").exists()
        if new:
            _set_wal_options(self.path)  # a new shard is made with them: load() creates it from that file
        try:
            # load() with a config checks it against the shard and writes it: how older shards get
            # this memory layout (for the segments written or rebuilt from now on).
            shard = qe.EdgeShard.load(str(self.path), self._config(task, self.schema))
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
        if not new and _set_wal_options(self.path):
            # Made by an earlier version: its WAL segments take the new size from its next open, and
            # it may hold deleted points' data from before purges existed.
            self._purge_marker.touch()
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
                raise StoreUnavailable("the embedded vector store is being indexed or purged; retry shortly")
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
            return qe.Query.Nearest(_vector(query_vector(probe, self.schema)), using=probe.using)  # type: ignore[arg-type]

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
                query=qe.Fusion.Rrf(k=RRF_K, weights=fusion_weights(probes, self.schema)),
                with_payload=True,
            )
        with self._use() as shard:
            found = shard.query(request)
        return [Hit.decode(p.id, p.score, p.payload) for p in found]

    def image_vector(self, tenant: str, sha256: str) -> list[float] | None:
        with self._use() as shard:
            records, _ = shard.scroll(qe.ScrollRequest(limit=1, filter=_image_filter(tenant, sha256),
                                                       with_payload=False, with_vector=["image"]))
        vectors = records[0].vector if records else None
        found = vectors.get("image") if isinstance(vectors, dict) else None
        return list(found) if found else None

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
            index_wanted=(self.path / _INDEX_MARKER).exists(),
        )

    def optimize(self) -> bool:
        """Build HNSW for the segments that need it (and purge, see `purge_deleted`), in a child process
        (see the module docstring).

        Blocks the calling thread (not the process) until done; the store is unavailable meanwhile.
        """
        return bool(self._in_child("optimize"))

    def purge_pending_since(self) -> float | None:
        try:
            return self._purge_marker.stat().st_mtime
        except FileNotFoundError:
            return None

    def purge_deleted(self) -> bool:
        """Rewrite the segments that hold deleted points without them, and rotate the WAL past their
        records, in a child process (see the module docstring). Blocks the calling thread until done;
        the store is unavailable meanwhile. False when no deletion is pending, or when maintenance is
        already under way (it purges too, unless it fails: `purge_pending_since` then still says so)."""
        if self.purge_pending_since() is None:
            return False
        return self._in_child("purge") is not None

    @property
    def _purge_marker(self) -> Path:
        return self.path / _PURGE_MARKER

    def _in_child(self, task: Task) -> bool | None:
        """Run `task` in a child process on the closed shard; what its optimize() returned, or None when
        maintenance was already under way."""
        with self._lock:
            if self._maintenance:
                return None
            self._maintenance = True  # new operations now fail fast with StoreUnavailable
            while self._active:
                self._idle.wait()
            if self._shard is not None:
                self._shard.close()
                self._shard = None
        try:
            result = subprocess.run(
                [sys.executable, "-m", "gateway.memory.store.edge", task, str(self.path),
                 str(os.getpid()), str(self.maintenance_nice)],
                capture_output=True, text=True, check=False,
            )
            if result.returncode != 0:
                raise StoreError(f"{task} of the embedded store failed: {result.stderr.strip()[-500:]}")
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

    def optimize_here(self, task: Task = "optimize") -> bool:
        """`task` in THIS process: for a process that serves nothing else (the CLI, the child). Both
        tasks vacuum every segment that holds deleted points; with deletions pending, they also rotate
        the WAL past their records, and then no longer count them as pending."""
        self.close()
        with self._lock:
            shard = self._open_locked(task)
        indexed = _indexed_segments(self.path)
        try:
            changed = shard.optimize()
            if self.purge_pending_since() is not None:
                _forget_wal_history(shard, self.path / "wal")
                self._purge_marker.unlink()
        finally:
            self.close()  # reopened, when used again, with the serving settings
        # (Segments replaced by an optimization leave the disk when the shard closes.)
        if task == "optimize":
            (self.path / _INDEX_MARKER).unlink(missing_ok=True)
        elif indexed - _indexed_segments(self.path):
            (self.path / _INDEX_MARKER).touch()
        return changed

    def delete_exchanges(self, tenant: str, exchange_ids: Sequence[str]) -> None:
        """Delete every point of these exchanges of `tenant`; durable (in the WAL) when this returns.

        The engine only marks deleted points: their vectors and payload stay in the segment files (and
        the WAL) until `purge_deleted()` rewrites them. That is also why no payload holds an exchange's
        text or client URL (gateway.memory.texts).
        """
        if not exchange_ids:
            return
        flt = qe.Filter(must=[qe.FieldCondition(TENANT_FIELD, match=qe.MatchValue(tenant)),
                              qe.FieldCondition("exchange_id", match=qe.MatchAny(list(exchange_ids)))])
        self._delete(flt)

    def delete_points(self, tenant: str, point_ids: Sequence[str]) -> None:
        if not point_ids:
            return
        self._delete(qe.Filter(must=[qe.HasIdCondition(set(point_ids)),
                                     qe.FieldCondition(TENANT_FIELD, match=qe.MatchValue(tenant))]))

    def _delete(self, flt: qe.Filter) -> None:
        with self._use() as shard:
            if self.purge_pending_since() is None:
                self._purge_marker.touch()  # before the deletion: a crash between the two only costs a purge
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


def _set_wal_options(path: Path) -> bool:
    """Write `_WAL_OPTIONS` into the shard's config file unless it has WAL options; whether it wrote.

    Qdrant Edge 0.9 reads them from that file but its Python API has no parameter for them; a load()
    keeps what the file says. They apply to the WAL segments made from the next open on."""
    config = path / "edge_config.json"
    current = json.loads(config.read_text()) if config.exists() else {}
    if current.get("wal_options") is not None:
        return False
    tmp = config.with_name(config.name + ".tmp")
    tmp.write_text(json.dumps({**current, "wal_options": _WAL_OPTIONS}))
    os.replace(tmp, config)
    return True


def _indexed_segments(path: Path) -> set[str]:
    """The shard's segments with an HNSW index (as each segment's own config file says)."""
    def hnsw(config: Path) -> bool:
        vectors = json.loads(config.read_text())["config"]["vector_data"].values()
        return any(vector["index"]["type"] == "hnsw" for vector in vectors)

    return {config.parent.name for config in path.glob("segments/*/segment.json") if hnsw(config)}


def _forget_wal_history(shard: qe.EdgeShard, wal: Path) -> int:
    """Make the WAL delete every record written so far (the upserts of deleted points among them);
    returns how many records it took.

    The WAL deletes a segment file once the segment is closed, its records are flushed to the segments
    and a newer segment is closed too (it keeps one). A segment closes when a record does not fit in it,
    so this writes records of no effect (a payload set on no point) too large to fit, flushing after
    each, until the segment that was open and every older one are gone. An older shard's segments are
    larger: the record doubles until one does not fit."""
    def closed() -> set[str]:
        return {file.name for file in wal.glob("closed-*")}

    old = closed()
    size = _WAL_OPTIONS["segment_capacity"]
    rotated = False
    for written in range(1, _MAX_FILLERS + 1):
        before = closed()
        shard.update(qe.UpdateOperation.set_payload([], {"_": "0" * size}))
        new = closed() - before
        if not new:
            size = min(2 * size, _MAX_FILLER_BYTES)
        elif not rotated:
            old |= new  # the segment that was open: the last records written before this call
            rotated = True
        shard.flush()  # lets the WAL delete the closed segments whose records are now on disk
        if rotated and not old & closed():
            return written
    raise StoreError(f"the WAL at {wal} still holds old records after {_MAX_FILLERS} rotating records")


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
    # `python -m gateway.memory.store.edge optimize|purge PATH PID NICE`: the maintenance child (see
    # EdgeStore.optimize and EdgeStore.purge_deleted).
    if len(sys.argv) == 5 and sys.argv[1] in ("optimize", "purge"):
        _become_maintenance_child(int(sys.argv[3]), int(sys.argv[4]))
        print(EdgeStore(Path(sys.argv[2])).optimize_here(sys.argv[1]))  # type: ignore[arg-type]
    else:
        raise SystemExit("usage: python -m gateway.memory.store.edge optimize|purge SHARD_PATH PARENT_PID NICE")

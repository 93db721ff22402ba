"""The ingest worker: journal -> CLIP embeddings -> vector store, off the request path.

Loop (one daemon thread): claim the oldest `batch_size` un-ingested exchanges from the journal, embed
them (texts and images in batches), upsert the points, and only after the store acknowledged the
upsert mark them ingested. So:
- a crash or SIGKILL at any moment loses nothing: un-marked exchanges are picked up again on restart,
  or, with several workers on a shared journal, by another worker once the dead one's claim expired
  (`Journal.claim`: workers never hold the same exchange at once);
- re-ingesting is harmless: point ids are deterministic (points.point_id), an upsert overwrites;
- while the store fails, the batch (already embedded) is retried with exponential backoff and the
  journal's backlog grows; chats are unaffected because they only append to the journal.

Data problems are handled per item, never by blocking the queue: an image whose blob is missing or
does not decode loses its image vector (the point keeps its text vectors); "error" exchanges and
exchanges with nothing to embed are skipped and marked (see points.STORED_STATUSES).

Maintenance (the embedded store's HNSW build) runs here too, under `MaintenancePolicy`.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from gateway import metrics
from gateway.journal import BlobStore, BlobUnavailable, Exchange, Journal
from gateway.memory.embed import ClipEmbedder, ImageDecodeError
from gateway.memory.encoders import MODELS, PARTS, available, check, per_image
from gateway.memory.points import PointPlan, plan_points
from gateway.memory.reuse import VectorReuse
from gateway.memory.store.base import StoreError, StoreUnavailable, VectorStore
from gateway.memory.store.points import StorePoint
from gateway.memory.store.schema import SCHEMA, Schema, Sparse, VectorValue
from gateway.memory.text_embed import TextEncoders

log = logging.getLogger("visionrag.memory.ingest")


@dataclass(slots=True)
class MaintenancePolicy:
    """When the worker may build the store's HNSW index (`store.optimize()`).

    Qdrant Edge's own optimize() holds the GIL for its whole run (~10-20 s at 10k points, ~6 min at 100k
    on 2 cores): in the gateway process it would freeze every chat. So EdgeStore.optimize() runs it in a
    niced child process while the gateway closes the shard; meanwhile ingest pauses (the journal absorbs
    chats) and /search answers 503. That is still an outage of search, hence only when both hold:
    - at least `min_new_points` points were written since the last index build: below that, filtered
      brute force is fast enough (measured here: a 9k-point tenant p99 ~3 ms for one vector, a 100-point
      tenant <1 ms even in a 100k shard; see bench/memory_search.py); or a purge of deleted points left
      an indexed segment without its index (the store's `stats().index_wanted`);
    - nothing happened (no new exchange, no search) for `quiet_s` seconds.
    `quiet_s <= 0` disables it: index with `visionrag optimize` while the gateway is stopped.
    A server store (RemoteStore) indexes itself; its optimize() is a no-op.
    """

    min_new_points: int = 20_000
    quiet_s: float = 600.0

    @property
    def enabled(self) -> bool:
        return self.quiet_s > 0


@dataclass(slots=True)
class IngestStats:
    exchanges: int = 0  # marked ingested by this process (stored or skipped)
    points: int = 0
    skipped: int = 0  # exchanges that yield no point ("error" status, nothing to embed)
    images_unusable: int = 0  # images missing from the BlobStore or not decodable
    failures: int = 0  # failed attempts (store or model), each retried
    retrying: bool = False
    last_error: str | None = None
    last_ingest_at: float | None = None
    optimizations: int = 0
    points_at_last_optimize: int | None = None

    def as_dict(self) -> dict[str, object]:
        return {name: getattr(self, name) for name in self.__slots__}  # type: ignore[attr-defined]


@dataclass(slots=True)
class _Prepared:
    """A batch embedded and ready to upsert: kept across retries so a store outage costs no re-embedding."""

    exchange_ids: list[str]
    points: list[StorePoint]
    skipped: int
    images_unusable: int


@dataclass(slots=True)
class Backoff:
    initial_s: float = 0.5
    max_s: float = 30.0
    _current: float = field(default=0.0, init=False)

    def next(self) -> float:
        self._current = self.initial_s if self._current == 0 else min(self.max_s, self._current * 2)
        return self._current

    def reset(self) -> None:
        self._current = 0.0


class IngestWorker:
    def __init__(
        self,
        journal: Journal,
        blobs: BlobStore,
        embedder: ClipEmbedder,
        store: VectorStore,
        *,
        batch_size: int = 16,
        poll_interval_s: float = 0.5,
        backoff: Backoff | None = None,
        maintenance: MaintenancePolicy | None = None,
        nice: int = 0,
        reuse: VectorReuse | None = None,
        text: TextEncoders | None = None,
        schema: Schema = SCHEMA,
        name: str = "gateway",
        lease_s: float = 120.0,
        private_store: bool = False,
    ) -> None:
        """`text` makes the sentence-model and BM25 vectors (schema's `text` and `terms`); without it
        points get only CLIP's. `schema`: the vectors to write (the store's). `nice` > 0 lowers the
        worker thread's CPU priority by that much (Linux: per thread), so on a busy box the request path
        gets the CPU first and ingest takes what is left. `reuse` holds vectors that retrieval for a chat
        already computed. `name` identifies this worker's claims on the journal's backlog, which last
        `lease_s` (then another worker takes them). `private_store`: the store is this worker's alone
        (an embedded one beside other workers'): on start it drops what other workers took over from
        an earlier run of the same name, so no exchange is in two workers' stores."""
        self.name = name
        self.lease_s = lease_s
        self.private_store = private_store
        self.journal = journal
        self.blobs = blobs
        self.embedder = embedder
        self.store = store
        self.batch_size = max(1, batch_size)
        self.poll_interval_s = poll_interval_s
        self.backoff = backoff or Backoff()
        self.maintenance = maintenance or MaintenancePolicy(quiet_s=0)
        self.nice = nice
        self.reuse = reuse if reuse is not None else VectorReuse(0)
        self.text = text
        check(schema)
        self.schema = schema
        self.native_id: int | None = None  # the worker thread's OS id, once running
        self.stats = IngestStats()
        self._prepared: _Prepared | None = None
        self._schema_ready = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_activity = time.monotonic()

    # --- thread lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="memory-ingest", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 30.0) -> None:
        """Finish the batch in hand (if the store answers), then return. Unfinished work stays queued."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None
        if self._prepared is not None:  # not stored: other workers need not wait for the lease
            try:
                self.journal.release(self.name)
            except Exception as exc:  # noqa: BLE001 - the lease expires anyway
                log.warning("memory: could not release this worker's claims: %s", exc)
            self._prepared = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def touch(self) -> None:
        """Note activity (a search): postpones maintenance that would freeze the process."""
        self._last_activity = time.monotonic()

    def _run(self) -> None:
        native_id = threading.get_native_id()
        if self.nice > 0 and hasattr(os, "setpriority"):
            try:
                # On Linux a thread id addresses one thread: only this worker (and the onnxruntime work it
                # runs inline with threads=1) is deprioritized, not the event loop.
                current = os.getpriority(os.PRIO_PROCESS, native_id)
                os.setpriority(os.PRIO_PROCESS, native_id, min(19, current + self.nice))
            except OSError as exc:
                log.warning("memory: cannot lower the ingest thread's priority: %s", exc)
        self.native_id = native_id
        try:
            self.embedder.load()
            if self.text is not None:
                self.text.load()
        except Exception as exc:  # noqa: BLE001 - the first batch retries the load and reports it
            log.error("memory: CLIP models failed to load: %s", exc)
            self.stats.last_error = str(exc)
        while not self._stop.is_set():
            try:
                done = self.run_once()
            except Exception as exc:  # any failure is retried, never fatal
                delay = self.backoff.next()
                self.stats.failures += 1
                self.stats.retrying = True
                self.stats.last_error = f"{type(exc).__name__}: {exc}"
                # An outage (the store's, the blob store's, whose cause it logged) is waited out, not a bug.
                outage = isinstance(exc, StoreUnavailable | BlobUnavailable)
                log.log(logging.WARNING if outage else logging.ERROR, "memory ingest failed (retrying in %.1f s): %s",
                        delay, exc, exc_info=not isinstance(exc, StoreError | BlobUnavailable))
                self._stop.wait(delay)
                continue
            if done:
                continue  # more may be waiting: no sleep between full batches
            self._maybe_maintain()
            self._stop.wait(self.poll_interval_s)

    # --- one step ------------------------------------------------------------------------------------
    def run_once(self) -> int:
        """Ingest one batch; return how many exchanges were marked (0 when the backlog is empty).

        Raises StoreUnavailable/StoreError/EmbedderError on failure; the batch stays queued (and stays
        embedded in memory, so the retry only repeats the upsert).
        """
        if self._prepared is None:
            batch = self.journal.claim(self.name, self.batch_size, self.lease_s)
            if not batch:
                return 0
            self._last_activity = time.monotonic()
            with metrics.EMBED_INGEST.time():
                self._prepared = self.prepare(batch)
        prepared = self._prepared
        if not self._schema_ready:
            self.store.ensure_schema()
            if self.private_store:
                self._drop_taken_over()
            self._schema_ready = True
        with metrics.STORE_UPSERT.time():
            self.store.upsert(prepared.points)
        # Exchanges forgotten since the batch was read (gateway.history.forget): their rows are gone, and
        # the deletion may have run before this upsert, so their points are deleted again here.
        gone = sorted(set(prepared.exchange_ids) - self.journal.present(prepared.exchange_ids))
        if gone:
            tenants = {p.payload.get("tenant") for p in prepared.points if p.payload.get("exchange_id") in gone}
            for tenant in tenants:
                self.store.delete_exchanges(str(tenant), gone)
        # Only now, with the store's acknowledgement, is the batch done.
        self.journal.mark_ingested(prepared.exchange_ids, worker=self.name)
        metrics.INGESTED.inc(len(prepared.exchange_ids))
        self._prepared = None
        self.backoff.reset()
        stats = self.stats
        stats.exchanges += len(prepared.exchange_ids)
        stats.points += len(prepared.points)
        stats.skipped += prepared.skipped
        stats.images_unusable += prepared.images_unusable
        stats.retrying = False
        stats.last_ingest_at = time.time()
        return len(prepared.exchange_ids)

    def _drop_taken_over(self) -> None:
        """Points an earlier run of this worker stored but did not get to mark (killed between the two),
        whose exchanges another worker has stored since: in a store of its own they would be a second
        copy of what the other's store holds."""
        ids = self.journal.taken_over(self.name)
        by_tenant: dict[str, list[str]] = {}
        for exchange_id in ids:
            if (exchange := self.journal.get(exchange_id)) is not None:
                by_tenant.setdefault(exchange.tenant, []).append(exchange_id)
        for tenant, tenant_ids in by_tenant.items():
            self.store.delete_exchanges(tenant, tenant_ids)
        if ids:
            log.info("memory: dropped %d exchange(s) another worker took over from this one", len(ids))

    def drain(self, on_progress: Callable[[int], None] | None = None, max_failures: int = 5) -> int:
        """Ingest until the backlog is empty, in this thread (the CLI's path). Returns exchanges marked."""
        total = 0
        failures = 0
        while True:
            try:
                done = self.run_once()
            except StoreUnavailable:
                failures += 1
                if failures >= max_failures:
                    raise
                time.sleep(self.backoff.next())
                continue
            failures = 0
            if not done:
                return total
            total += done
            if on_progress is not None:
                on_progress(done)

    def prepare(self, batch: list[Exchange]) -> _Prepared:
        """Embed a batch: every distinct image and text once per model, in batches, whichever vectors of
        the schema read it (gateway.memory.encoders)."""
        plans: list[PointPlan] = []
        skipped = 0
        for exchange in batch:
            exchange_plans = plan_points(exchange)
            if not exchange_plans:
                skipped += 1
            plans.extend(exchange_plans)

        specs = [spec for spec in self.schema if available(spec, self.text)]
        # What each vector reads of each point: vector name -> plan id -> an image's sha256 or text(s).
        reads = {spec.name: {plan.id: part for plan in plans if (part := PARTS[spec.reads].read(plan))}
                 for spec in specs}
        shas = dict.fromkeys(sha for spec in specs if per_image(spec) for sha in reads[spec.name].values())
        image_vectors, unusable = self._image_vectors(list(shas))  # type: ignore[arg-type]
        # Every distinct text once per model, whichever vectors read it (a multivector's texts one by one).
        texts: dict[str, dict[str, None]] = {}  # model -> its texts, in order
        for spec in specs:
            if not per_image(spec):
                for part in reads[spec.name].values():
                    texts.setdefault(spec.model, {}).update(dict.fromkeys([part] if isinstance(part, str) else part))
        text_vectors = {model: self._text_vectors(model, list(todo)) for model, todo in texts.items()}

        points: list[StorePoint] = []
        for plan in plans:
            vectors: dict[str, VectorValue] = {}
            for spec in specs:
                part = reads[spec.name].get(plan.id)
                if part is None:
                    continue
                value: VectorValue | None
                if isinstance(part, list):  # a multivector: one vector per text
                    value = [text_vectors[spec.model][text] for text in part]  # type: ignore[misc]
                elif per_image(spec):
                    value = image_vectors.get(part)  # None: the image is unusable
                else:
                    value = text_vectors[spec.model][part]
                if value is not None and not (isinstance(value, Sparse) and not value.indices):
                    vectors[spec.name] = value
            if vectors:  # an image-only point whose image is unusable has nothing left to search by
                points.append(StorePoint(plan.id, vectors, plan.payload))
        return _Prepared([e.id for e in batch], points, skipped, unusable)

    def _image_vectors(self, shas: list[str]) -> tuple[dict[str, VectorValue], int]:
        """CLIP's vector of each of these images that is usable, and how many are not (missing from
        the BlobStore, or not decodable)."""
        vectors: dict[str, np.ndarray] = {}
        images: dict[str, Image.Image] = {}
        unusable = 0
        for sha in shas:
            reused = self.reuse.take_image(sha)
            if reused is not None:
                vectors[sha] = reused
                continue
            data = self.blobs.get(sha)
            if data is None:
                log.warning("image %s is missing from the blob store; storing its exchange without it", sha)
                unusable += 1
                continue
            try:
                images[sha] = self.embedder.decode_image(data)
            except ImageDecodeError as exc:
                log.warning("image %s does not decode (%s); storing its exchange without it", sha, exc)
                unusable += 1
        if images:
            vectors.update(zip(images, self.embedder.embed_images(list(images.values())), strict=True))
        return {sha: vector.tolist() for sha, vector in vectors.items()}, unusable

    def _text_vectors(self, model: str, texts: list[str]) -> dict[str, VectorValue]:
        """`model`'s vector of each of these distinct texts: taken from what retrieval computed for a
        chat's question where the model allows it (encoders.Model.reusable), else embedded in one run."""
        vectors: dict[str, VectorValue] = {}
        if MODELS[model].reusable:
            for text in texts:
                if (reused := self.reuse.take_text(text, model)) is not None:
                    vectors[text] = reused.tolist()
        todo = [text for text in texts if text not in vectors]
        if todo:
            vectors.update(zip(todo, MODELS[model].documents(self.embedder, self.text, todo), strict=True))
        return vectors

    # --- maintenance ---------------------------------------------------------------------------------
    def _maybe_maintain(self) -> None:
        policy = self.maintenance
        if not policy.enabled or time.monotonic() - self._last_activity < policy.quiet_s:
            return
        try:
            stats = self.store.stats()
            points = stats.points
            since = points - (self.stats.points_at_last_optimize or 0)
            if since < policy.min_new_points and not stats.index_wanted:
                return
            log.info("memory: indexing the vector store (%d points; quiet for %.0f s)", points, policy.quiet_s)
            started = time.monotonic()
            self.store.optimize()
            self.stats.optimizations += 1
            self.stats.points_at_last_optimize = points
            log.info("memory: index build took %.1f s", time.monotonic() - started)
        except Exception as exc:  # noqa: BLE001 - maintenance is best-effort
            log.warning("memory: index maintenance failed: %s", exc)
        finally:
            self._last_activity = time.monotonic()

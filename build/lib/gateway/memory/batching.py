"""Concurrent searches and chats share model runs: what arrives while one batch runs goes into the next.

A model run over a batch costs much less per item than the same items one at a time (the single-item
runs of small matrices use a core poorly). Ingest batches by itself; queries come one per request, on
many threads. `Batcher` joins them without a timer: while fewer than `parallel` runs are going (one per
core by default), a call runs at once, so a lone request, or as many as there are cores, wait for
nothing; calls that arrive when every core is busy queue and go together into the next run, as vLLM's
continuous batching does for generation. It has no thread of its own: waiting callers take turns
running batches, each until its own items are done. A failed batch is run again call by call, so one
caller's bad input fails only that caller.

Rows are handed out by position, so a run must give exactly one row per item: a run that gives more or
fewer fails every caller of that batch (which row belongs to whom cannot be known) rather than hand one
caller another's vectors. Whatever a run raises, every caller in it is released: an interrupt
(KeyboardInterrupt, SystemExit, a cancellation) goes up the thread that ran the batch and fails the
others, who would otherwise wait for rows no one is computing.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from PIL import Image

from gateway.memory.embed import ClipEmbedder, EmbedderError
from gateway.memory.store.schema import Sparse
from gateway.memory.text_embed import TextEncoders


class _Call:
    __slots__ = ("done", "error", "items", "rows")

    def __init__(self, items: list[Any]) -> None:
        self.items = items
        self.rows: np.ndarray | None = None
        self.error: BaseException | None = None
        self.done = False


class Batcher:
    """`fn(items) -> one row per item`, batched across concurrent callers (at most `max_items` a run,
    at most `parallel` runs at once)."""

    def __init__(self, fn: Callable[[list[Any]], np.ndarray], max_items: int = 16, parallel: int | None = None) -> None:
        self.fn = fn
        self.max_items = max(1, max_items)
        self.parallel = max(1, parallel if parallel is not None else os.cpu_count() or 1)
        self._cond = threading.Condition()
        self._queue: list[_Call] = []
        self._running = 0
        self.runs = 0  # model runs made, for tests and stats

    def __call__(self, items: Sequence[Any]) -> np.ndarray:
        call = _Call(list(items))
        if not call.items:
            return self.fn([])
        with self._cond:
            self._queue.append(call)
            try:
                while not call.done:
                    if self._running >= self.parallel or not self._queue:
                        self._cond.wait()  # a run going holds this call (or will take it next)
                        continue
                    self._running += 1
                    batch = self._take()
                    self._cond.release()
                    try:
                        self._run(batch)
                    finally:
                        self._cond.acquire()
                        self._running -= 1
                        self._cond.notify_all()
            except BaseException:
                if call in self._queue:  # interrupted while waiting: no one is left to take the rows
                    self._queue.remove(call)
                raise
        if call.error is not None:
            raise call.error
        assert call.rows is not None
        return call.rows

    def _take(self) -> list[_Call]:
        """The oldest calls that fit in one run (always at least one)."""
        batch, size = [], 0
        while self._queue and (not batch or size + len(self._queue[0].items) <= self.max_items):
            call = self._queue.pop(0)
            batch.append(call)
            size += len(call.items)
        return batch

    def _run(self, batch: list[_Call]) -> None:
        try:
            self._run_batch(batch)
        except BaseException as exc:
            for call in batch:
                if not call.done:
                    call.error = EmbedderError(f"a model run was interrupted ({type(exc).__name__})")
                    call.error.__cause__ = exc
                    call.done = True
            raise

    def _run_batch(self, batch: list[_Call]) -> None:
        self.runs += 1
        items = [item for call in batch for item in call.items]
        try:
            rows = self.fn(items)
        except Exception as exc:  # noqa: BLE001 - handed to the callers, who raise it
            if len(batch) > 1:  # whose input was it? each call alone, so only its caller fails
                for call in batch:
                    self._run_batch([call])
                return
            batch[0].error, batch[0].done = exc, True  # raised in the caller's own thread
            return
        if len(rows) != len(items):
            for call in batch:
                call.error = EmbedderError(f"a model run gave {len(rows)} rows for {len(items)} inputs")
                call.done = True
            return
        start = 0
        for call in batch:
            call.rows = rows[start:start + len(call.items)]
            call.done = True
            start += len(call.items)


class BatchedClip:
    """CLIP for queries: concurrent callers' `embed_texts`, and their `embed_images`, share model runs."""

    def __init__(self, clip: ClipEmbedder, max_items: int = 16, parallel: int | None = None) -> None:
        self.text_runs = Batcher(clip.embed_texts, max_items, parallel)
        self.image_runs = Batcher(clip.embed_images, max_items, parallel)

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        return self.text_runs(texts)

    def embed_images(self, images: Sequence[bytes | Image.Image]) -> np.ndarray:
        return self.image_runs(images)


class BatchedText:
    """The text encoders for queries: concurrent callers' `sentences` share model runs."""

    def __init__(self, encoders: TextEncoders, max_items: int = 16, parallel: int | None = None) -> None:
        self.encoders = encoders
        self.sentence_runs = Batcher(encoders.sentences, max_items, parallel)

    def sentences(self, texts: Sequence[str]) -> np.ndarray:
        return self.sentence_runs(texts)

    def terms_query(self, text: str) -> Sparse:
        # Not batched: a BM25 query is tokenizing and hashing, no model run.
        return self.encoders.terms_query(text)

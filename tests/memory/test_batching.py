"""Concurrent queries share model runs; each caller gets its own rows, and only its own errors."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from gateway.memory.batching import Batched, Batcher


class SlowModel:
    """A stand-in for a model run whose cost is mostly fixed per run (how batching pays off)."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.lock = threading.Lock()

    def __call__(self, items: list[int]) -> np.ndarray:
        if any(item < 0 for item in items):
            raise ValueError("negative input")
        with self.lock:
            self.batches.append(items)
        time.sleep(0.05)
        return np.asarray([[item, item * 2] for item in items])


def test_a_lone_call_runs_at_once_with_its_own_rows() -> None:
    model = SlowModel()
    batcher = Batcher(model, parallel=1)
    started = time.perf_counter()
    rows = batcher([3, 4])
    assert time.perf_counter() - started < 0.5
    assert rows.tolist() == [[3, 6], [4, 8]] and model.batches == [[3, 4]]
    assert batcher([]).shape[0] == 0


def test_calls_that_arrive_while_the_cores_are_busy_share_the_next_run() -> None:
    model = SlowModel()
    batcher = Batcher(model, max_items=16, parallel=1)
    with ThreadPoolExecutor(12) as pool:
        results = list(pool.map(lambda n: batcher([n]), range(12)))
    assert [r.tolist() for r in results] == [[[n, n * 2]] for n in range(12)]
    assert sorted(item for batch in model.batches for item in batch) == list(range(12))
    assert len(model.batches) < 12  # batched: fewer runs than calls
    assert max(len(batch) for batch in model.batches) > 1


def test_runs_never_exceed_max_items_and_parallel() -> None:
    running, peak = 0, 0
    lock = threading.Lock()

    def model(items: list[int]) -> np.ndarray:
        nonlocal running, peak
        assert len(items) <= 3
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.03)
        with lock:
            running -= 1
        return np.asarray(items)

    batcher = Batcher(model, max_items=3, parallel=2)
    with ThreadPoolExecutor(10) as pool:
        results = list(pool.map(lambda n: batcher([n]), range(20)))
    assert [r.tolist() for r in results] == [[n] for n in range(20)]
    assert peak == 2


def test_one_caller_s_bad_input_fails_only_that_caller() -> None:
    model = SlowModel()
    batcher = Batcher(model, parallel=1)
    blocker = threading.Thread(target=batcher, args=([100],))
    blocker.start()  # keeps the one core busy, so the next calls queue into one run
    time.sleep(0.01)
    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(batcher, [n]) for n in (1, -1, 2, 3)]
    blocker.join()
    with pytest.raises(ValueError):
        futures[1].result()
    assert [futures[i].result().tolist() for i in (0, 2, 3)] == [[[1, 2]], [[2, 4]], [[3, 6]]]


def test_batched_clip_gives_the_vectors_clip_gives_alone(embedder) -> None:
    texts = [f"a diagram of service number {n}" for n in range(8)]
    alone = embedder.embed_texts(texts)
    batched = Batched(embedder, ("embed_texts",), parallel=1)
    with ThreadPoolExecutor(8) as pool:
        rows = list(pool.map(lambda t: batched.embed_texts([t])[0], texts))
    # Padding differs with the batch's longest text; the vectors stay the same to float precision.
    np.testing.assert_allclose(np.asarray(rows), alone, atol=1e-4)
    assert batched.loaded is True and batched.batch_size == embedder.batch_size  # everything else is the embedder's own

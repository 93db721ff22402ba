"""Concurrent queries share model runs; each caller gets its own rows, and only its own errors."""

from __future__ import annotations

import threading
import time
from asyncio import CancelledError
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from gateway.memory.batching import BatchedClip, Batcher
from gateway.memory.embed import EmbedderError


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


class Gate:
    """A model whose first run waits until the test opens it: meanwhile the next calls queue, so they are
    known to go into one run together."""

    def __init__(self, then: Callable[[list[int]], np.ndarray]) -> None:
        self.then = then
        self.opened = threading.Event()
        self.first = True

    def __call__(self, items: list[int]) -> np.ndarray:
        if self.first:
            self.first = False
            assert self.opened.wait(10)
            return np.asarray([[item, item * 2] for item in items])
        return self.then(items)


def queued_behind_a_run(batcher: Batcher, model: Gate, calls: list[list[int]]) -> dict[int, object]:
    """Each of `calls` in its own (daemon) thread, all queued while one run holds the only core; what
    each caller got (its rows, or the exception it raised), by call index. Daemon threads: a caller
    that is never released cannot hang the test process, the test fails instead."""
    got: dict[int, object] = {}

    def call(n: int) -> None:
        try:
            got[n] = batcher(calls[n])
        except BaseException as exc:  # noqa: BLE001 - what the caller got is the result
            got[n] = exc

    blocker = threading.Thread(target=batcher, args=([100],), daemon=True)
    blocker.start()
    deadline = time.monotonic() + 10
    while batcher._running == 0 and time.monotonic() < deadline:  # the gated run holds the core
        time.sleep(0.001)
    threads = [threading.Thread(target=call, args=(n,), daemon=True) for n in range(len(calls))]
    for thread in threads:
        thread.start()
    while len(batcher._queue) < len(calls) and time.monotonic() < deadline:
        time.sleep(0.001)
    assert len(batcher._queue) == len(calls)
    model.opened.set()
    for thread in [blocker, *threads]:
        thread.join(10)
    assert not any(thread.is_alive() for thread in [blocker, *threads]), "a caller was never released"
    return got


@pytest.mark.parametrize("wrong", [-1, +1])
def test_a_run_with_a_row_too_few_or_too_many_fails_every_caller_of_that_run(wrong: int) -> None:
    def model(items: list[int]) -> np.ndarray:
        rows = [[item, item * 2] for item in items]
        return np.asarray(rows[:-1] if wrong < 0 else [*rows, [-7, -7]])

    gate = Gate(model)
    batcher = Batcher(gate, max_items=16, parallel=1)
    got = queued_behind_a_run(batcher, gate, [[1], [2, 3], [4]])
    # Rows are handed out by position: with one missing, caller 0 would get its row, caller 1 its first
    # and caller 2's, caller 2 nothing. No caller gets rows of a run that miscounted.
    assert all(isinstance(got[n], EmbedderError) for n in range(3)), got
    assert "rows for 4 inputs" in str(got[0])


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt, SystemExit, CancelledError])
def test_an_interrupt_inside_a_run_releases_every_caller_of_that_run(interrupt: type[BaseException]) -> None:
    def model(items: list[int]) -> np.ndarray:
        raise interrupt()

    gate = Gate(model)
    batcher = Batcher(gate, max_items=16, parallel=1)
    got = queued_behind_a_run(batcher, gate, [[1], [2], [3]])
    # The thread that ran the batch (one of the callers) is the one interrupted; the others fail.
    interrupted = [n for n in range(3) if type(got[n]) is interrupt]
    assert len(interrupted) == 1, got
    released = [got[n] for n in range(3) if n not in interrupted]
    assert all(isinstance(error, EmbedderError) and isinstance(error.__cause__, interrupt) for error in released)
    # Nothing is left behind: the batcher still serves.
    gate.then = lambda items: np.asarray([[item, item * 2] for item in items])
    assert batcher([5]).tolist() == [[5, 10]] and batcher._running == 0 and not batcher._queue


def test_an_interrupt_in_one_of_several_runs_leaves_nothing_waiting_or_queued() -> None:
    # Two items a run: three queued calls need two runs, and the interrupted runner may be the third
    # caller, whose own call is still queued. It is withdrawn, not run later for no one.
    runs: list[list[int]] = []

    def model(items: list[int]) -> np.ndarray:
        runs.append(items)
        if len(runs) == 1:
            raise KeyboardInterrupt
        return np.asarray([[item, item * 2] for item in items])

    gate = Gate(model)
    batcher = Batcher(gate, max_items=2, parallel=1)
    got = queued_behind_a_run(batcher, gate, [[1], [2], [3]])
    assert sum(type(result) is KeyboardInterrupt for result in got.values()) == 1, got
    for n, result in got.items():
        assert isinstance(result, (KeyboardInterrupt, EmbedderError)) or result.tolist() == [[n + 1, 2 * n + 2]]
    assert batcher._running == 0 and not batcher._queue


def test_batched_clip_gives_the_vectors_clip_gives_alone(embedder) -> None:
    texts = [f"a diagram of service number {n}" for n in range(8)]
    alone = embedder.embed_texts(texts)
    batched = BatchedClip(embedder, parallel=1)
    with ThreadPoolExecutor(8) as pool:
        rows = list(pool.map(lambda t: batched.embed_texts([t])[0], texts))
    # Padding differs with the batch's longest text; the vectors stay the same to float precision.
    np.testing.assert_allclose(np.asarray(rows), alone, atol=1e-4)

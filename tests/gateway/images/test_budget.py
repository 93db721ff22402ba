"""The decode budget bounds what decodes hold at once, in bytes, first come first served."""

from __future__ import annotations

import threading
import time

import pytest

from gateway.images.budget import DecodeBudget


def run_all(budget: DecodeBudget, sizes: list[int], hold_s: float, log: list[tuple[str, int]]) -> None:
    """One thread per size, started in order, each holding its bytes for `hold_s`."""
    lock = threading.Lock()
    running: set[int] = set()

    def decode(n: int, size: int) -> None:
        with budget.hold(size):
            with lock:
                running.add(n)
                assert budget.used <= budget.total
                log.append(("start", n))
            time.sleep(hold_s)
            with lock:
                running.discard(n)
                log.append(("end", n))

    threads = []
    for n, size in enumerate(sizes):
        thread = threading.Thread(target=decode, args=(n, size))
        thread.start()
        threads.append(thread)
        time.sleep(0.005)  # a definite arrival order
    for thread in threads:
        thread.join(10)
        assert not thread.is_alive()


def test_no_more_than_fits_runs_at_once():
    budget = DecodeBudget(250)
    log: list[tuple[str, int]] = []
    run_all(budget, [100] * 8, 0.05, log)
    assert budget.peak_running == 2 and budget.peak_bytes == 200
    assert sorted(n for kind, n in log if kind == "end") == list(range(8))
    assert budget.used == 0


def test_small_decodes_run_together():
    budget = DecodeBudget(1000)
    run_all(budget, [10] * 8, 0.1, [])
    assert budget.peak_running == 8


def test_a_large_decode_is_not_overtaken_by_later_small_ones():
    budget = DecodeBudget(100)
    log: list[tuple[str, int]] = []
    # 0 holds 60; 1 needs 100 and must wait for it; 2-4 (10 each) would fit beside 0 but arrived later.
    run_all(budget, [60, 100, 10, 10, 10], 0.05, log)
    starts = [n for kind, n in log if kind == "start"]
    assert starts[:2] == [0, 1]
    assert log.index(("start", 1)) > log.index(("end", 0))


def test_a_decode_larger_than_the_budget_runs_alone_instead_of_waiting_forever():
    budget = DecodeBudget(100)
    log: list[tuple[str, int]] = []
    run_all(budget, [10, 500, 10], 0.05, log)
    assert log.index(("start", 1)) > log.index(("end", 0))
    assert log.index(("start", 2)) > log.index(("end", 1))
    assert budget.peak_bytes == 100


def test_bytes_come_back_when_the_decode_fails():
    budget = DecodeBudget(100)
    with pytest.raises(ValueError), budget.hold(80):
        raise ValueError("corrupt image")
    assert budget.used == 0
    with budget.hold(100):
        assert budget.used == 100

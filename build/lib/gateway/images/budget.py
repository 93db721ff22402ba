"""A byte budget for image decodes running at once, shared by every thread that decodes.

A count of decodes would not bound memory: one 36-megapixel PNG costs what a thousand thumbnails
do. Each decode holds what it will allocate; the rest wait, first come first served, so a large
image is not starved by a stream of small ones. A decode larger than the whole budget runs alone.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager


class DecodeBudget:
    def __init__(self, total_bytes: int) -> None:
        if total_bytes <= 0:
            raise ValueError("the decode budget must be positive")
        self.total = total_bytes
        self._used = 0
        self._running = 0
        self._queue: deque[object] = deque()
        self._cond = threading.Condition()
        # Highest values seen, for tests and benchmarks.
        self.peak_bytes = 0
        self.peak_running = 0

    @property
    def used(self) -> int:
        return self._used

    @contextmanager
    def hold(self, nbytes: int) -> Iterator[None]:
        """Block until `nbytes` fit (and every earlier caller got its turn); give them back on exit."""
        amount = min(max(nbytes, 0), self.total)
        turn = object()
        with self._cond:
            self._queue.append(turn)
            while self._queue[0] is not turn or self._used + amount > self.total:
                self._cond.wait()
            self._queue.popleft()
            self._used += amount
            self._running += 1
            self.peak_bytes = max(self.peak_bytes, self._used)
            self.peak_running = max(self.peak_running, self._running)
            self._cond.notify_all()  # the next in line may fit as well
        try:
            yield
        finally:
            with self._cond:
                self._used -= amount
                self._running -= 1
                self._cond.notify_all()

"""Housekeeping threads (history's retention sweeps and finisher of deletions, memory's purge of the
store): each one daemon thread, started and stopped alike, looping in `_run` until `_stop` is set."""

from __future__ import annotations

import threading


class DaemonLoop:
    name = "background"
    join_s = 30.0  # how long `stop` waits for the work under way

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake()
        if self._thread is not None:
            self._thread.join(self.join_s)
            self._thread = None

    def _wake(self) -> None:
        """Out of a wait on anything but `_stop` (for loops that wait for their own cue)."""

    def _run(self) -> None:
        raise NotImplementedError

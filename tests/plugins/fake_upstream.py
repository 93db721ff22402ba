"""A scripted OpenAI upstream (bench/fake_upstream.py) as a process.

A test double, used only for upstream behaviour a real vLLM cannot be made to show on demand:
a stall past the gateway's timeout, a connection dropped mid-stream, replicas to balance across.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.plugins.gateway_server import free_port

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class FakeUpstream:
    port: int
    process: subprocess.Popen

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)


@pytest.fixture
def fake_upstream() -> Iterator[Callable[..., FakeUpstream]]:
    started: list[FakeUpstream] = []

    def start(port: int | None = None, *args: str) -> FakeUpstream:
        port = port or free_port()
        process = subprocess.Popen([sys.executable, "-m", "bench.fake_upstream", "--port", str(port), *args],
                                   cwd=ROOT, start_new_session=True,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        else:
            raise RuntimeError("fake upstream did not start")
        upstream = FakeUpstream(port, process)
        started.append(upstream)
        return upstream

    yield start
    for upstream in started:
        upstream.stop()

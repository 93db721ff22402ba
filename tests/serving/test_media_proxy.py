"""The GPU profile (vLLM 0.10.2, no media allow-list) blocks vLLM's media fetches through its environment.

vLLM 0.10.2 needs CUDA and cannot run here, so media_proxy_check.py makes the two client calls of
0.10.2's vllm/connections.py (aiohttp with trust_env, requests) with the real libraries from the
vLLM venv, under the environment the launcher gives that profile. That stand-in is the only one.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from serving import launch
from tests.plugins.loopback import Listener

CHECK = Path(__file__).resolve().parent / "media_proxy_check.py"
GPU_PROFILE = "llama32-vision-2xl40s"


def fetch(urls: list[str], env: dict[str, str]) -> dict[str, dict]:
    python = launch.python_for(launch.load_profile("tiny"))
    result = subprocess.run(
        [python, str(CHECK), *urls],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        # Only what is given: a developer's own proxy settings must not decide the outcome.
        env={"PATH": "/usr/bin:/bin", **env},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout)


def profile_env() -> dict[str, str]:
    profile = launch.load_profile(GPU_PROFILE)
    return launch.build_launch(profile, env={"HF_TOKEN": "hf_test", "VLLM_API_KEY": "k"}, python="/py").env


def test_without_the_profile_the_clients_reach_the_listener(listener: Listener) -> None:
    # The control: the same calls with no proxy settings fetch from loopback, as vLLM 0.10.2 would.
    url = f"http://127.0.0.1:{listener.port}/diagram.png"
    outcome = fetch([url], env={})[url]
    assert outcome["aiohttp"] == outcome["requests"] == "status 200"
    assert len(listener.connections) == 2


def test_with_the_profile_nothing_reaches_the_listener(listener: Listener) -> None:
    urls = [
        f"http://127.0.0.1:{listener.port}/diagram.png",
        f"http://localhost:{listener.port}/diagram.png",
        f"https://127.0.0.1:{listener.port}/diagram.png",
    ]
    outcomes = fetch(urls, env=profile_env())
    for url, outcome in outcomes.items():
        assert outcome["proxied"], url
        # The proxy's port is closed: the connection to it is refused, the target never contacted.
        assert outcome["aiohttp"] in {"ClientProxyConnectionError", "ClientConnectorError"}, (url, outcome)
        assert outcome["requests"] in {"ProxyError", "ConnectionError"}, (url, outcome)
    assert listener.connections == [] and listener.paths == []


def test_only_hugging_face_bypasses_the_dead_proxy() -> None:
    # Decided from the environment alone (no connection is needed to know where a URL would go).
    env = profile_env()
    script = (
        "import sys, urllib.request\n"
        "for url in sys.argv[1:]:\n"
        "    host = urllib.request.urlparse(url).hostname\n"
        "    print(url, not urllib.request.proxy_bypass(host))\n"
    )
    urls = {
        "https://huggingface.co/api/models/x": False,
        "https://cdn-lfs.huggingface.co/repos/x": False,
        "https://cas-bridge.xethub.hf.co/x": False,
        "http://169.254.169.254/latest/meta-data/": True,
        "http://metadata.google.internal/": True,
        "http://[::1]:8000/x": True,
        "http://10.0.0.7/x.png": True,
        "https://example.com/x.png": True,
        "https://huggingface.co.attacker.example/x.png": True,
    }
    python = launch.python_for(launch.load_profile("tiny"))
    result = subprocess.run([python, "-c", script, *urls], capture_output=True, text=True, timeout=60,
                            check=True, env={"PATH": "/usr/bin:/bin", **env})  # fmt: skip
    proxied = dict(line.rsplit(" ", 1) for line in result.stdout.splitlines())
    assert {url: proxied[url] == "True" for url in urls} == urls

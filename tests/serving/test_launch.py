"""serving/launch.py: profile -> command line, hardware pick, env substitution, offline failures.

The only stand-in in these tests is a FAKE `nvidia-smi` (a shell script on PATH printing GPU
names), because this machine has no NVIDIA GPU; everything else is the real launcher.
"""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from serving import launch

LAUNCH = str(launch.REPO_ROOT / "serving" / "launch.py")


def run_launch(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, LAUNCH, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, **(env or {})},
    )


def fake_nvidia_smi(folder: Path, gpus: list[str], exit_code: int = 0) -> str:
    """A fake nvidia-smi on a PATH of its own; prints one GPU name per line like the real one."""
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "nvidia-smi"
    lines = "".join(f"echo '{name}'\n" for name in gpus)
    script.write_text(f"#!/bin/sh\n{lines}exit {exit_code}\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return f"{folder}:/usr/bin:/bin"


# ---- command line ---------------------------------------------------------------------------------


def test_dry_run_prints_the_tiny_command() -> None:
    result = run_launch("serve", "--profile", "tiny", "--dry-run", "--host", "127.0.0.1", "--port", "8123")
    assert result.returncode == 0, result.stderr
    command = result.stdout.strip()
    assert "HF_HUB_OFFLINE=1" in command and "VLLM_ENABLE_V1_MULTIPROCESSING=0" in command
    assert f"{launch.REPO_ROOT}/.venv-vllm/bin/python -m vllm.entrypoints.openai.api_server" in command
    assert f"--model {launch.REPO_ROOT}/models/tiny-vlm" in command
    assert "--host 127.0.0.1 --port 8123" in command
    assert "--dtype float32 --max-model-len 2048 --enforce-eager" in command
    assert "--limit-mm-per-prompt '{\"image\":1}'" in command


def test_vllm_args_render_every_value_type() -> None:
    profile = launch.load_profile("tiny")
    argv = launch.vllm_args(profile, host="127.0.0.1", port=9000, env={})
    assert argv[:6] == ["--model", str(launch.REPO_ROOT / "models" / "tiny-vlm"), "--host", "127.0.0.1",
                        "--port", "9000"]  # fmt: skip
    assert argv[argv.index("--max-model-len") + 1] == "2048"  # integers as text
    assert argv[argv.index("--enforce-eager") + 1].startswith("--")  # true: a bare flag
    assert argv[argv.index("--limit-mm-per-prompt") + 1] == '{"image":1}'  # tables: JSON


def test_env_substitution_and_masking(tmp_path: Path) -> None:
    path = tmp_path / "custom.toml"
    path.write_text(
        '[vllm]\npackage = "vllm"\nversion = "0.10.2"\nentrypoint = ["-m", "x"]\n'
        '[model]\nsource = "org/model"\n'
        '[env]\nHF_TOKEN = "${HF_TOKEN}"\n'
        '[args]\nserved-model-name = "${KEY}"\nchat-template = "${TEMPLATE:-}"\nseed = "${SEED:-7}"\n'
        "disable-log-stats = false\n"
    )
    profile = launch.load_profile(str(path))
    done = launch.build_launch(profile, env={"KEY": "name", "HF_TOKEN": "hf_x"}, python="/py",
                               extra=["--api-key", "s3cret"])
    assert done.warnings == []
    assert done.argv[done.argv.index("--served-model-name") + 1] == "name"
    # A key someone passes after `--` by hand is still never printed.
    assert done.display[done.display.index("--api-key") + 1] == "***"
    assert "--chat-template" not in done.argv  # ${VAR:-} empty: the flag is dropped
    assert done.argv[done.argv.index("--seed") + 1] == "7"  # the default
    assert "--disable-log-stats" not in done.argv  # false: omitted
    assert done.env == {"HF_TOKEN": "hf_x"}
    missing = launch.build_launch(profile, env={}, python="/py")
    assert missing.warnings == [
        "environment variable KEY is not set",
        "environment variable HF_TOKEN is not set",
    ]


def test_serve_refuses_missing_secrets(tmp_path: Path) -> None:
    path = fake_nvidia_smi(tmp_path / "bin", ["NVIDIA L40S", "NVIDIA L40S"])
    env = {"PATH": path, "HF_TOKEN": "", "VLLM_API_KEY": ""}
    result = run_launch("serve", "--profile", "llama32-vision-2xl40s", env=env)
    assert result.returncode == 2
    assert "VLLM_API_KEY is not set" in result.stderr and "HF_TOKEN is not set" in result.stderr


def test_dry_run_shows_the_llama_command_even_without_gpus() -> None:
    result = run_launch("serve", "--profile", "llama32-vision-2xl40s", "--dry-run",
                        env={"PATH": "/usr/bin:/bin", "VLLM_API_KEY": "k", "HF_TOKEN": "t"})  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "--tensor-parallel-size 2" in result.stdout
    # Secrets travel in the environment only, and the printed command shows neither.
    assert "--api-key" not in result.stdout and "VLLM_API_KEY" not in result.stdout
    assert "hf_" not in result.stdout and "HF_TOKEN" not in result.stdout
    assert "needs 2 NVIDIA GPUs" in result.stderr  # a warning in dry-run mode


def test_unknown_profile_lists_the_known_ones() -> None:
    result = run_launch("serve", "--profile", "nope", "--dry-run")
    assert result.returncode == 2
    assert "unknown serving profile 'nope'" in result.stderr and "tiny" in result.stderr


def test_help() -> None:
    for args in (["--help"], ["serve", "--help"]):
        result = run_launch(*args)
        assert result.returncode == 0 and "profile" in result.stdout


# ---- hardware pick (fake nvidia-smi) --------------------------------------------------------------


def test_two_gpus_pick_the_llama_profile(tmp_path: Path) -> None:
    path = fake_nvidia_smi(tmp_path / "bin", ["NVIDIA L40S", "NVIDIA L40S"])
    result = run_launch("pick", env={"PATH": path})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "llama32-vision-2xl40s"
    assert "2 GPU(s)" in result.stderr


def test_one_gpu_is_a_clear_tensor_parallel_error(tmp_path: Path) -> None:
    path = fake_nvidia_smi(tmp_path / "bin", ["NVIDIA L40S"])
    result = run_launch("pick", env={"PATH": path})
    assert result.returncode == 2
    assert "needs 2 NVIDIA GPUs (tensor-parallel-size 2) but nvidia-smi found 1" in result.stderr


def test_no_nvidia_smi_picks_smolvlm_on_cpu() -> None:
    result = run_launch("pick", env={"PATH": "/usr/bin:/bin"})
    assert result.returncode == 0 and result.stdout.strip() == "smolvlm-cpu"


def test_failing_nvidia_smi_counts_as_no_gpu(tmp_path: Path) -> None:
    # nvidia-smi exists but the driver is not loaded: it prints an error and exits non-zero.
    path = fake_nvidia_smi(tmp_path / "bin", ["NVIDIA-SMI has failed"], exit_code=9)
    result = run_launch("pick", env={"PATH": path})
    assert result.stdout.strip() == "smolvlm-cpu"


def test_requested_profile_is_checked_against_gpus() -> None:
    profile, reason = launch.pick_profile("llama32-vision-2xl40s", gpus=["NVIDIA L40S"] * 2)
    assert profile.name == "llama32-vision-2xl40s" and reason == "requested"
    with pytest.raises(launch.LaunchError, match="needs 2 NVIDIA GPUs"):
        launch.pick_profile("llama32-vision-2xl40s", gpus=[])
    assert launch.pick_profile("tiny", gpus=[])[0].name == "tiny"  # CPU profiles need no GPU


# ---- Hugging Face models: clear and fast failures offline ------------------------------------------


def test_smolvlm_offline_fails_clearly(tmp_path: Path) -> None:
    env = {"HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    result = run_launch("serve", "--profile", "smolvlm-cpu", env=env)
    assert result.returncode == 2
    assert "downloaded from Hugging Face" in result.stderr
    assert "HF_HUB_OFFLINE is set" in result.stderr


def test_smolvlm_unreachable_hub_fails_fast(tmp_path: Path) -> None:
    # An endpoint on a closed loopback port stands for "no internet": refused at once.
    env = {"HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "", "PATH": "/usr/bin:/bin",
           "HF_ENDPOINT": f"http://127.0.0.1:{closed_port()}"}  # fmt: skip
    started = time.monotonic()
    result = run_launch("serve", "--profile", "smolvlm-cpu", env=env)
    assert result.returncode == 2
    assert "cannot reach" in result.stderr and "PROFILE=tiny" in result.stderr
    assert time.monotonic() - started < 30


def test_cached_hub_model_needs_no_network(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    snapshot = tmp_path / "hub" / "models--HuggingFaceTB--SmolVLM-256M-Instruct" / "snapshots" / "abc"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{closed_port()}")
    launch.ensure_model(launch.load_profile("smolvlm-cpu"))  # no exception: cached


def test_gated_model_needs_hf_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_TOKEN", raising=False)
    with pytest.raises(launch.LaunchError, match="gated"):
        launch.ensure_model(launch.load_profile("llama32-vision-2xl40s"))


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # closed again when this returns


# ---- secrets stay off the command line --------------------------------------------------------------


def test_no_profile_puts_a_secret_on_the_command_line() -> None:
    for name in launch.list_profiles():
        profile = launch.load_profile(name)
        argv = launch.build_launch(profile, env={"VLLM_API_KEY": "k-secret", "HF_TOKEN": "hf_secret"},
                                   python="/py").argv
        assert not any("secret" in word for word in argv), (name, argv)
    llama = launch.build_launch(launch.load_profile("llama32-vision-2xl40s"),
                                env={"VLLM_API_KEY": "k-secret", "HF_TOKEN": "hf_secret"}, python="/py")
    assert llama.env["VLLM_API_KEY"] == "k-secret"  # vLLM 0.10.2 reads it when --api-key is absent


def test_a_secret_flag_in_a_profile_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "leaky.toml"
    path.write_text('[vllm]\npackage = "vllm"\nversion = "0.10.2"\n[model]\nsource = "org/m"\n'
                    '[args]\napi-key = "${VLLM_API_KEY}"\n')
    with pytest.raises(launch.LaunchError, match=r"api-key in \[args\] would put a secret"):
        launch.load_profile(str(path))


def test_missing_vllm_api_key_is_refused_before_start(tmp_path: Path) -> None:
    path = fake_nvidia_smi(tmp_path / "bin", ["NVIDIA L40S", "NVIDIA L40S"])
    result = run_launch("serve", "--profile", "llama32-vision-2xl40s",
                        env={"PATH": path, "HF_TOKEN": "t", "VLLM_API_KEY": ""})
    assert result.returncode == 2 and "VLLM_API_KEY is not set" in result.stderr

"""Where the CLI takes its settings from (gateway/cli/env.py), and failing at once offline."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from gateway.cli import env as cli_env
from tests.plugins.gateway_server import ROOT, free_port


@pytest.fixture
def shell(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A shell with no VISIONRAG_ settings, in a folder that is not the checkout."""
    for key in list(os.environ):
        if key.startswith("VISIONRAG_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_the_runtime_file_beats_dotenv_and_its_relative_paths_are_the_checkouts(
    shell: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime = shell / "gateway.env"
    runtime.write_text("VISIONRAG_DATA_DIR='from-run'\nVISIONRAG_PORT='9123'\nSOME_TOOL_SETTING='1'\n")
    (shell / ".env").write_text("VISIONRAG_DATA_DIR=from-dotenv\nVISIONRAG_QDRANT_COLLECTION=from-dotenv\n")
    monkeypatch.setenv(cli_env.RUN_ENV_VARIABLE, str(runtime))
    monkeypatch.delenv("SOME_TOOL_SETTING", raising=False)

    settings = cli_env.load_settings()
    assert settings.data_dir == ROOT / "from-run"  # not ./from-run in whatever folder the CLI runs
    assert settings.qdrant_collection == "from-dotenv"
    assert cli_env.gateway_url(settings) == "http://127.0.0.1:9123"
    assert os.environ["SOME_TOOL_SETTING"] == "1"  # e.g. HF_HUB_OFFLINE from the tiny profile


def test_the_environment_wins_and_its_relative_paths_are_the_current_folders(
    shell: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime = shell / "gateway.env"
    runtime.write_text("VISIONRAG_DATA_DIR='/somewhere/else'\n")
    monkeypatch.setenv(cli_env.RUN_ENV_VARIABLE, str(runtime))
    monkeypatch.setenv("VISIONRAG_DATA_DIR", "mine")
    assert cli_env.load_settings().data_dir == Path("mine")  # relative: pathlib resolves it against cwd


def test_without_any_file_the_default_data_dir_is_the_checkouts(shell: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(cli_env.RUN_ENV_VARIABLE, "")  # empty: no runtime file
    assert cli_env.load_settings().data_dir == ROOT / "data"
    assert list(shell.iterdir()) == []


def test_models_go_offline_only_when_missing_and_the_hub_is_unreachable(
    shell: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{free_port()}")  # nothing listens there
    monkeypatch.setenv(cli_env.RUN_ENV_VARIABLE, "")
    monkeypatch.setenv("VISIONRAG_FASTEMBED_CACHE_DIR", str(ROOT / "models" / "clip-tiny"))
    assert cli_env.models_offline_if_unreachable(cli_env.load_settings()) is False  # cached: no change
    assert "HF_HUB_OFFLINE" not in os.environ

    monkeypatch.setenv("VISIONRAG_FASTEMBED_CACHE_DIR", str(shell / "empty-cache"))
    assert cli_env.models_offline_if_unreachable(cli_env.load_settings()) is True
    assert os.environ["HF_HUB_OFFLINE"] == "1"


def test_a_search_without_models_or_hub_fails_at_once_and_says_why(tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items()
           if not key.startswith("VISIONRAG_") and key != "HF_HUB_OFFLINE"}
    env |= {"HF_ENDPOINT": f"http://127.0.0.1:{free_port()}", cli_env.RUN_ENV_VARIABLE: "",
            "VISIONRAG_DATA_DIR": str(tmp_path / "data"), "VISIONRAG_FASTEMBED_CACHE_DIR": str(tmp_path / "cache"),
            "COLUMNS": "200"}
    started = time.monotonic()
    result = subprocess.run([str(ROOT / ".venv" / "bin" / "visionrag"), "search", "anything"], cwd=tmp_path,
                            env=env, capture_output=True, text=True, timeout=120, check=False)
    assert time.monotonic() - started < 20  # fastembed alone retries the hub for ~40 s
    assert result.returncode == 1
    assert "cannot load CLIP model" in result.stderr and "model hub cannot be reached" in result.stderr

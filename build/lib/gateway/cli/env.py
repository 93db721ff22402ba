"""Where the `visionrag` CLI takes its settings from, so that it works from any folder.

The gateway started by `make run` reads the environment and the checkout's `.env`, plus what
`serving/stack.py` adds: the serving profile's gateway settings (the tiny profile's local CLIP models,
`HF_HUB_OFFLINE=1`), the data dir as an absolute path, the gateway's host and port. stack.py writes
those to a runtime file (data/run/gateway.env). The CLI reads, highest first:

1. the environment;
2. that runtime file (`VISIONRAG_RUN_ENV_FILE` overrides where it is; empty turns it off);
3. `.env` in the current folder, then the checkout's `.env`;
4. the defaults.

A relative path from the environment is relative to the current folder, as a shell user expects; one
from a file or a default (`data`) is relative to the checkout, where the gateway runs. The checkout
is found from this package's location, which an editable install (`pip install -e .`) keeps there.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from urllib.parse import urlsplit

from dotenv import dotenv_values

from gateway.settings import Settings

RUN_ENV_VARIABLE = "VISIONRAG_RUN_ENV_FILE"
# Settings holding paths that are resolved against the checkout when they do not come from the shell.
_PATH_SETTINGS = ("data_dir", "fastembed_cache_dir", "qdrant_local_path")


def project_root() -> Path | None:
    """The checkout this package runs from, or None when installed elsewhere (a wheel)."""
    root = Path(__file__).resolve().parents[2]
    return root if (root / "pyproject.toml").is_file() and (root / "serving").is_dir() else None


def run_env_file(root: Path | None = None) -> Path | None:
    """The runtime file `make run` wrote, if there is one to read."""
    configured = os.environ.get(RUN_ENV_VARIABLE)
    if configured is not None:
        return Path(configured) if configured.strip() else None
    root = root if root is not None else project_root()
    return root / "data" / "run" / "gateway.env" if root is not None else None


def load_settings() -> Settings:
    """The CLI's settings (see the module docstring). Also exports the runtime file's non-VISIONRAG_
    variables (HF_HUB_OFFLINE) to this process unless the environment sets them."""
    root = project_root()
    runtime = run_env_file(root)
    files: list[Path] = []
    if root is not None:
        files.append(root / ".env")
    files.append(Path(".env"))
    if runtime is not None and runtime.is_file():
        files.append(runtime)  # later files win over earlier ones; the environment wins over all
        for key, value in dotenv_values(runtime).items():
            if not key.startswith("VISIONRAG_") and value is not None:
                os.environ.setdefault(key, value)
    unique = list(dict.fromkeys(path.resolve() for path in files if path.is_file()))
    settings = Settings(_env_file=tuple(unique) or None)  # type: ignore[call-arg]
    if root is None:
        return settings
    updates: dict[str, Path] = {}
    for name in _PATH_SETTINGS:
        value = getattr(settings, name)
        if value is not None and not value.is_absolute() and f"VISIONRAG_{name.upper()}" not in os.environ:
            updates[name] = root / value
    return settings.model_copy(update=updates) if updates else settings


def gateway_url(settings: Settings) -> str:
    return f"http://{settings.host}:{settings.port}"


# --- CLIP models: fail at once rather than wait on a hub that cannot be reached -------------------
def _cached(cache_dir: Path, model: str) -> bool:
    return (cache_dir / f"models--{model.replace('/', '--')}").is_dir()


def _reachable(url: str, timeout_s: float) -> bool:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname or "", port), timeout=timeout_s):
            return True
    except OSError:
        return False


def models_offline_if_unreachable(settings: Settings, timeout_s: float = 3.0) -> bool:
    """Set HF_HUB_OFFLINE=1 when the CLIP models are not cached and the model hub cannot be reached,
    so that loading them fails at once with the embedder's message instead of after fastembed's
    retries (~40 s). Returns True when it did. Online, or with the models cached, nothing changes."""
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        return False
    import tempfile

    cache = settings.fastembed_cache_dir or Path(
        os.environ.get("FASTEMBED_CACHE_PATH") or Path(tempfile.gettempdir()) / "fastembed_cache"
    )
    if all(_cached(cache, model) for model in (settings.clip_text_model, settings.clip_vision_model)):
        return False
    endpoint = os.environ.get("HF_ENDPOINT") or "https://huggingface.co"
    if _reachable(endpoint, timeout_s):
        return False
    os.environ["HF_HUB_OFFLINE"] = "1"
    return True

"""Turn a serving profile (serving/profiles/NAME.toml) into the vLLM command line, and run it.

Standard library only, so it runs from the gateway's venv, vLLM's venv or a bare python3; the vLLM
process itself always runs with the python of the profile's own venv (``[vllm].venv``).

    python serving/launch.py list                       # the profiles
    python serving/launch.py pick                       # which profile this machine gets
    python serving/launch.py serve --dry-run            # print the command for that profile
    python serving/launch.py serve --profile tiny       # run vLLM in the foreground

A profile's ``[args]`` table maps vLLM flags to values: ``key = "v"`` -> ``--key v``; ``true`` ->
``--key``; ``false`` -> omitted; a table -> its JSON; a list -> ``--key a b``. Strings may hold
``${VAR}`` (required) or ``${VAR:-default}`` (optional; an empty result drops the flag).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
PROFILES_DIR = REPO_ROOT / "serving" / "profiles"
GPU_PROFILE = "llama32-vision-2xl40s"
CPU_PROFILE = "smolvlm-cpu"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
# Secrets go in [env], never in [args]: vLLM logs its non-default arguments at start-up and `ps`
# shows every process's command line (vLLM 0.10.2 reads VLLM_API_KEY when --api-key is absent).
SECRET_FLAGS = frozenset({"api-key", "hf-token"})
# [env] entries never printed by --dry-run.
SECRET_ENV = frozenset({"HF_TOKEN", "VLLM_API_KEY"})
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class LaunchError(RuntimeError):
    """A problem the user can fix; printed without a traceback."""


@dataclass(frozen=True)
class Profile:
    name: str
    path: Path
    data: dict[str, Any]

    @property
    def vllm(self) -> dict[str, Any]:
        return self.data.get("vllm", {})

    @property
    def args(self) -> dict[str, Any]:
        return self.data.get("args", {})

    @property
    def model(self) -> dict[str, Any]:
        return self.data.get("model", {})

    @property
    def accelerator(self) -> str:
        return self.data.get("hardware", {}).get("accelerator", "cpu")

    @property
    def tensor_parallel_size(self) -> int:
        return int(self.args.get("tensor-parallel-size", 1))

    @property
    def gateway_env(self) -> dict[str, str]:
        """Settings for the gateway in front of this profile ([gateway.env]); relative paths are the repo's."""
        env = self.data.get("gateway", {}).get("env", {})
        return {key: str(value) for key, value in env.items()}

    @property
    def served_model_name(self) -> str:
        return str(self.args.get("served-model-name", self.model.get("source", "")))

    @property
    def venv(self) -> Path:
        return REPO_ROOT / self.vllm.get("venv", ".venv-vllm")


@dataclass
class Launch:
    """Everything needed to start the server: argv, environment additions, masked display form."""

    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    display: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


# ---- profiles -------------------------------------------------------------------------------------


def list_profiles() -> list[str]:
    return sorted(path.stem for path in PROFILES_DIR.glob("*.toml"))


def load_profile(name_or_path: str) -> Profile:
    """Load a profile by name (serving/profiles/NAME.toml) or by path to a .toml file."""
    path = Path(name_or_path)
    if path.suffix != ".toml":
        path = PROFILES_DIR / f"{name_or_path}.toml"
    if not path.is_file():
        raise LaunchError(f"unknown serving profile {name_or_path!r}; known: {', '.join(list_profiles())}")
    with path.open("rb") as handle:
        data = tomllib.load(handle)
    for table in ("vllm", "model", "args"):
        if not isinstance(data.get(table), dict):
            raise LaunchError(f"{path}: missing [{table}] table")
    if secrets := sorted(SECRET_FLAGS & set(data["args"])):
        raise LaunchError(
            f"{path}: {', '.join(secrets)} in [args] would put a secret on vLLM's command line (logged at "
            "start-up, visible in `ps`): set it in [env] instead (e.g. VLLM_API_KEY = \"${VLLM_API_KEY}\")"
        )
    return Profile(name=path.stem, path=path, data=data)


# ---- hardware -------------------------------------------------------------------------------------


def detect_gpus(nvidia_smi: str = "nvidia-smi") -> list[str]:
    """Names of the NVIDIA GPUs nvidia-smi lists; [] when it is absent or fails."""
    exe = shutil.which(nvidia_smi)
    if exe is None:
        return []
    try:
        result = subprocess.run(
            [exe, "--query-gpu=name", "--format=csv,noheader"],
            check=False,
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    if result.returncode != 0:
        return []
    return [line.strip() for line in result.stdout.splitlines() if line.strip()]


def pick_profile(
    requested: str | None, gpus: list[str] | None = None, *, check: bool = True
) -> tuple[Profile, str]:
    """The profile to run and why: the requested one, else GPU -> Llama, no GPU -> SmolVLM on CPU.

    With ``check`` a GPU profile needing more GPUs than present raises LaunchError.
    """
    if gpus is None:
        gpus = detect_gpus()
    if requested:
        profile, reason = load_profile(requested), "requested"
    elif gpus:
        profile = load_profile(GPU_PROFILE)
        reason = f"nvidia-smi lists {len(gpus)} GPU(s): {', '.join(gpus)}"
    else:
        profile = load_profile(CPU_PROFILE)
        reason = "no NVIDIA GPU found (nvidia-smi absent or lists none): CPU fallback"
    if check:
        check_hardware(profile, gpus)
    return profile, reason


def check_hardware(profile: Profile, gpus: list[str]) -> None:
    """Refuse a GPU profile that needs more GPUs than are present."""
    if profile.accelerator != "cuda":
        return
    needed = profile.tensor_parallel_size
    if len(gpus) < needed:
        found = f"{len(gpus)} ({', '.join(gpus)})" if gpus else "none (is nvidia-smi on PATH?)"
        raise LaunchError(
            f"profile {profile.name!r} needs {needed} NVIDIA GPUs (tensor-parallel-size {needed}) "
            f"but nvidia-smi found {found}. Run on a machine with {needed} GPUs, choose another "
            f"profile (PROFILE=..., known: {', '.join(list_profiles())}), or lower tensor-parallel-size "
            f"in {profile.path.relative_to(REPO_ROOT)}."
        )


# ---- command line ---------------------------------------------------------------------------------


def substitute(value: str, env: dict[str, str], missing: list[str]) -> str:
    """Expand ${VAR} / ${VAR:-default}; names of unset required variables are appended to `missing`."""

    def expand(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if env.get(name):
            return env[name]
        if default is not None:
            return default
        missing.append(name)
        return match.group(0)

    return _VAR.sub(expand, value)


def render_flag(flag: str, value: Any, env: dict[str, str], missing: list[str]) -> list[str]:
    """One [args] entry as vLLM argv words ([] when it turns the flag off)."""
    option = f"--{flag}"
    if isinstance(value, bool):
        return [option] if value else []
    if isinstance(value, dict):
        return [option, json.dumps(value, separators=(",", ":"))]
    if isinstance(value, list):
        return [option, *(substitute(str(item), env, missing) for item in value)]
    if isinstance(value, str):
        text = substitute(value, env, missing)
        return [option, text] if text else []
    return [option, str(value)]


def vllm_args(
    profile: Profile,
    *,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    model: str | None = None,
    env: dict[str, str] | None = None,
    missing: list[str] | None = None,
) -> list[str]:
    """The arguments after the entrypoint: what vLLM's own argument parser receives."""
    env = dict(os.environ) if env is None else env
    missing = [] if missing is None else missing
    argv = ["--model", model_location(profile, model), "--host", host, "--port", str(port)]
    for flag, value in profile.args.items():
        if flag in {"model", "host", "port"}:
            raise LaunchError(f"{profile.path}: set {flag!r} outside [args] (it is a launcher option)")
        argv += render_flag(flag, value, env, missing)
    return argv


def model_location(profile: Profile, override: str | None = None) -> str:
    """A local folder (absolute) or a Hugging Face repository id."""
    if override:
        return str(Path(override).resolve()) if Path(override).exists() else override
    source = profile.model["source"]
    local = REPO_ROOT / source
    if not Path(source).is_absolute() and (profile.model.get("build") or local.exists()):
        return str(local)
    return source


def python_for(profile: Profile, override: str | None = None) -> str:
    return override or str(profile.venv / "bin" / "python")


def build_launch(
    profile: Profile,
    *,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    model: str | None = None,
    python: str | None = None,
    extra: list[str] | None = None,
    env: dict[str, str] | None = None,
) -> Launch:
    """The full command and environment; unset required variables become warnings here."""
    env = dict(os.environ) if env is None else env
    missing: list[str] = []
    args = vllm_args(profile, host=host, port=port, model=model, env=env, missing=missing)
    server_env: dict[str, str] = {}
    for name, value in profile.data.get("env", {}).items():
        text = substitute(str(value), env, missing)
        if "${" not in text:
            server_env[name] = text
    argv = [python_for(profile, python), *profile.vllm.get("entrypoint", []), *args, *(extra or [])]
    launch = Launch(argv=argv, env=server_env, display=mask(argv))
    launch.warnings = [f"environment variable {name} is not set" for name in dict.fromkeys(missing)]
    return launch


def mask(argv: list[str]) -> list[str]:
    shown = list(argv)
    for index, word in enumerate(shown[:-1]):
        if word.startswith("--") and word[2:] in SECRET_FLAGS and "${" not in shown[index + 1]:
            shown[index + 1] = "***"
    return shown


# ---- the model ------------------------------------------------------------------------------------


def ensure_model(profile: Profile, model: str | None = None, *, timeout_s: float = 10.0) -> None:
    """Build a local test model when needed; for Hugging Face models, fail fast when unreachable."""
    location = model_location(profile, model)
    builder = profile.model.get("build")
    if builder and model is None:
        build_local_model(profile, Path(location), REPO_ROOT / builder)
        return
    if Path(location).is_absolute() or Path(location).exists():
        if not Path(location).exists():
            raise LaunchError(f"model folder {location} does not exist")
        return
    check_hub_model(profile, location, timeout_s=timeout_s)


def build_local_model(profile: Profile, out: Path, builder: Path) -> None:
    marker = out / ".built"
    if marker.exists() and marker.stat().st_mtime >= builder.stat().st_mtime:
        return
    python = python_for(profile)
    if not Path(python).exists():
        raise LaunchError(f"{python} is missing: run `make {profile.vllm['venv']}/.installed` first")
    print(f"building the {profile.name} model into {out} ...", file=sys.stderr, flush=True)
    result = subprocess.run([python, str(builder), "--out", str(out)], check=False, cwd=REPO_ROOT)
    if result.returncode != 0:
        raise LaunchError(f"building {out} failed (exit {result.returncode}); see the output above")


def hub_cache_dir() -> Path:
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "huggingface"
    )
    return Path(home) / "hub"


def is_cached(repo_id: str) -> bool:
    snapshots = hub_cache_dir() / f"models--{repo_id.replace('/', '--')}" / "snapshots"
    return any(snapshots.glob("*/config.json"))


def check_hub_model(profile: Profile, repo_id: str, *, timeout_s: float) -> None:
    """Say that the weights come from Hugging Face, and fail clearly (not hang) when they can't."""
    if profile.model.get("gated") and not os.environ.get("HF_TOKEN"):
        raise LaunchError(
            f"{repo_id} is gated on Hugging Face: set HF_TOKEN to a token of an account that accepted "
            "its license (https://huggingface.co/settings/tokens)"
        )
    if is_cached(repo_id):
        return
    size = profile.model.get("download_size", "")
    print(
        f"profile {profile.name!r} serves {repo_id}: its weights{f' ({size})' if size else ''} are not "
        f"in the Hugging Face cache ({hub_cache_dir()}) and will be downloaded from Hugging Face on "
        "start-up, so this machine must reach huggingface.co.",
        file=sys.stderr,
        flush=True,
    )
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes", "on"}:
        raise LaunchError(f"HF_HUB_OFFLINE is set and {repo_id} is not in the cache: nothing to serve")
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")
    url = f"{endpoint}/api/models/{repo_id}"
    request = urllib.request.Request(url, method="HEAD")
    if os.environ.get("HF_TOKEN"):
        request.add_header("Authorization", f"Bearer {os.environ['HF_TOKEN']}")
    try:
        urllib.request.urlopen(request, timeout=timeout_s).close()
    except urllib.error.HTTPError as exc:
        if exc.code in (401, 403):
            raise LaunchError(f"Hugging Face refused {repo_id} ({exc.code}): check HF_TOKEN") from exc
        raise LaunchError(f"Hugging Face answered {exc.code} for {repo_id}") from exc
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise LaunchError(
            f"cannot reach {endpoint} ({reason}) to download {repo_id}. This machine is offline: "
            "pre-download the model where there is internet (`huggingface-cli download "
            f"{repo_id}`) and copy the HF cache, pass --model /path/to/local/folder, or use the "
            "offline test profile (PROFILE=tiny)."
        ) from exc


# ---- CLI ------------------------------------------------------------------------------------------


def _serve(options: argparse.Namespace) -> int:
    profile, reason = pick_profile(options.profile, check=not options.dry_run)
    print(f"serving profile: {profile.name} ({reason})", file=sys.stderr)
    if options.dry_run:
        try:
            check_hardware(profile, detect_gpus())
        except LaunchError as exc:
            print(f"warning: {exc}", file=sys.stderr)
    launch = build_launch(
        profile,
        host=options.host,
        port=options.port,
        model=options.model,
        python=options.python,
        extra=options.extra,
    )
    for warning in launch.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if options.dry_run:
        env_words = [
            f"{name}={shlex.quote(value)}" for name, value in launch.env.items() if name not in SECRET_ENV
        ]
        print(" ".join([*env_words, *map(shlex.quote, launch.display)]))
        return 0
    if launch.warnings:
        raise LaunchError("required environment variables are missing: " + "; ".join(launch.warnings))
    if not Path(launch.argv[0]).exists():
        raise LaunchError(
            f"{launch.argv[0]} not found: install {profile.vllm['package']}=={profile.vllm['version']} "
            f"with `make {profile.vllm.get('venv', '.venv-vllm')}/.installed` (or pass --python)"
        )
    ensure_model(profile, options.model)
    print("$ " + " ".join(map(shlex.quote, launch.display)), file=sys.stderr, flush=True)
    env = {**os.environ, **launch.env}
    # exec: the server takes this process's pid and process group, so callers can signal it directly.
    os.execve(launch.argv[0], launch.argv, env)
    return 0  # not reached


def _pick(options: argparse.Namespace) -> int:
    profile, reason = pick_profile(options.profile)
    print(f"{profile.name}: {reason}", file=sys.stderr)
    print(profile.name)
    return 0


def _show(options: argparse.Namespace) -> int:
    profile = load_profile(options.profile)
    fields = {
        "venv": str(profile.vllm.get("venv", ".venv-vllm")),
        "python": python_for(profile),
        "package": f"{profile.vllm['package']}=={profile.vllm['version']}",
        "image": str(profile.vllm.get("image", "")),
        "model": model_location(profile),
        "served-model-name": profile.served_model_name,
        "accelerator": profile.accelerator,
        "tensor-parallel-size": str(profile.tensor_parallel_size),
        "description": str(profile.data.get("description", "")),
    }
    if options.field:
        print(fields[options.field])
    else:
        print(json.dumps(fields, indent=2))
    return 0


def _list(options: argparse.Namespace) -> int:
    for name in list_profiles():
        print(f"{name:24} {load_profile(name).data.get('description', '')}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="serving/launch.py",
        description="Run vLLM's OpenAI-compatible server from a serving profile (serving/profiles/*.toml).",
        epilog="Without --profile the hardware decides: NVIDIA GPUs (nvidia-smi) -> "
        f"{GPU_PROFILE}; none -> {CPU_PROFILE}. The fully offline test profile is 'tiny'.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", help="run vLLM in the foreground (or print its command with --dry-run)")
    serve.add_argument("--profile", "-p", help="profile name or .toml path (default: from the hardware)")
    serve.add_argument("--host", default=DEFAULT_HOST, help="address to bind (default: %(default)s)")
    serve.add_argument("--port", type=int, default=DEFAULT_PORT, help="port (default: %(default)s)")
    serve.add_argument("--model", help="serve this local folder or HF repo id instead of the profile's")
    serve.add_argument("--python", help="python with vLLM installed (default: the profile's venv)")
    serve.add_argument("--dry-run", action="store_true", help="print the command (secrets masked) and exit")
    serve.add_argument("extra", nargs="*", help="more vLLM flags, after `--`")
    serve.set_defaults(func=_serve)

    pick = sub.add_parser("pick", help="print the profile this machine gets (checks the GPU count)")
    pick.add_argument("profile", nargs="?", help="a requested profile, validated against the hardware")
    pick.set_defaults(func=_pick)

    show = sub.add_parser("show", help="print a profile's facts (JSON, or one --field)")
    show.add_argument("profile")
    show.add_argument(
        "--field",
        choices=[
            "venv",
            "python",
            "package",
            "image",
            "model",
            "served-model-name",
            "accelerator",
            "tensor-parallel-size",
            "description",
        ],
    )
    show.set_defaults(func=_show)

    listing = sub.add_parser("list", help="list the profiles")
    listing.set_defaults(func=_list)
    return parser


def main(argv: list[str] | None = None) -> int:
    options = build_parser().parse_args(argv)
    try:
        return options.func(options)
    except LaunchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

"""Readers for the deployment files, shared by the tests in this folder. Everything here parses;
nothing needs Docker or a cluster."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
K8S_SHARED = DEPLOY / "k8s-shared"

PROFILE = ROOT / "serving" / "profiles" / "llama32-vision-2xl40s.toml"


# ---- images -----------------------------------------------------------------------------------------
def split_image(ref: str) -> tuple[str, str | None, str | None]:
    """`registry/name:tag@digest` -> (name, tag, digest). A port in the registry is not a tag."""
    name, _, digest = ref.partition("@")
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        name, tag = name.rsplit(":", 1)
        return name, tag, digest or None
    return name, None, digest or None


def assert_pinned(ref: str) -> None:
    _name, tag, digest = split_image(ref)
    assert tag or digest, f"{ref}: untagged image (means :latest)"
    assert tag != "latest", f"{ref}: :latest is not a pin"
    # A pin names a version: at least one digit (v1.20.0, 3.11.14-slim, 0.1.0), not 'stable'.
    assert digest or re.search(r"\d", tag), f"{ref}: tag {tag!r} names no version"


# ---- vLLM command lines -----------------------------------------------------------------------------
def parse_flags(argv: list[str]) -> dict[str, Any]:
    """`--a=1 --b 2 --c` -> {"a": "1", "b": "2", "c": True}; keys without dashes, `_` -> `-`."""
    flags: dict[str, Any] = {}
    i = 0
    while i < len(argv):
        arg = argv[i]
        assert arg.startswith("--"), f"positional argument {arg!r} in a vLLM command line"
        key, eq, value = arg[2:].partition("=")
        if not eq:
            if i + 1 < len(argv) and not argv[i + 1].startswith("--"):
                value = argv[i + 1]
                i += 1
            else:
                value = True
        flags[key.replace("_", "-")] = value
        i += 1
    return flags


def normalize_flag(key: str, value: Any) -> Any:
    """Compare what vLLM compares: numbers as numbers, `image=1` and `{"image": 1}` as one dict."""
    if key == "limit-mm-per-prompt":
        if isinstance(value, dict):
            return {k: int(v) for k, v in value.items()}
        text = str(value).strip()
        if text.startswith("{"):
            return {k: int(v) for k, v in json.loads(text).items()}
        return {k: int(v) for k, v in (item.split("=") for item in text.split(","))}
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    try:
        return float(value)
    except (TypeError, ValueError):
        return value


def normalized(flags: dict[str, Any]) -> dict[str, Any]:
    return {key: normalize_flag(key, env_ref(value)) for key, value in flags.items()}


# ---- loaders ---------------------------------------------------------------------------------------
def load_yaml_docs(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def kustomize_build(path: Path) -> list[dict]:
    """The objects a kustomization renders, by kustomize itself (the copy built into kubectl, which
    needs no cluster): patches, deletions and the base included exactly as `kubectl apply -k` would."""
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl (whose built-in kustomize renders deploy/k8s-shared) is not installed"
    out = subprocess.run([kubectl, "kustomize", str(path)], capture_output=True, text=True, check=True).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc is not None]


def k8s_find(objects: list[dict], kind: str, name: str) -> dict:
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def pod_spec(obj: dict) -> dict:
    return obj["spec"]["template"]["spec"]


def container(obj: dict) -> dict:
    (only,) = pod_spec(obj)["containers"]
    return only


def config_env(objects: list[dict], workload: dict) -> dict:
    """A workload's environment: its ConfigMaps' data, then its own entries; a Secret's value is
    written `$(NAME)`, the way Kubernetes refers to a variable."""
    env = {}
    for source in container(workload).get("envFrom", []):
        env.update(k8s_find(objects, "ConfigMap", source["configMapRef"]["name"])["data"])
    for e in container(workload).get("env", []):
        env[e["name"]] = e.get("value", f"$({e['name']})")
    return env


def runpod_vllm_argv() -> list[str]:
    """The VLLM_ARGS array of deploy/runpod/start.sh, expanded by bash itself rather than a regex."""
    script = (DEPLOY / "runpod" / "start.sh").read_text()
    block = re.search(r"^VLLM_ARGS=\(\n.*?^\)\n", script, re.DOTALL | re.MULTILINE)
    assert block, "start.sh has no VLLM_ARGS=( ... ) block"
    # The script's own defaults for the names the block uses (MODEL, REVISION).
    defaults = "".join(re.findall(r"^(?:MODEL|REVISION)=.*\n", script, re.MULTILINE))
    out = subprocess.run(
        ["bash", "-c", defaults + block.group(0) + 'printf "%s\\0" "${VLLM_ARGS[@]}"'],
        # Secrets expand to their own reference, so they compare equal to the profile's "${VAR}".
        env={
            "MODEL": "meta-llama/Llama-3.2-11B-Vision-Instruct",
            "VLLM_API_KEY": "${VLLM_API_KEY}",
            "PATH": "/usr/bin:/bin",
        },
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return out.split("\0")[:-1]


def runpod_vllm_env() -> dict[str, str]:
    """The VLLM_ENV array of deploy/runpod/start.sh (what `env` gives vLLM alone), expanded by bash."""
    script = (DEPLOY / "runpod" / "start.sh").read_text()
    block = re.search(r"^VLLM_ENV=\(\n.*?^\)\n", script, re.DOTALL | re.MULTILINE)
    assert block, "start.sh has no VLLM_ENV=( ... ) block"
    assert 'env "${VLLM_ENV[@]}" python3 -m vllm.entrypoints.openai.api_server' in script
    assert 'env "${VLLM_ENV[@]}" python3 /opt/visionrag/src/serving/gpu_preflight.py --gpus 2 || exit 1' in script
    out = subprocess.run(
        ["bash", "-c", block.group(0) + 'printf "%s\\0" "${VLLM_ENV[@]}"'],
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return dict(item.split("=", 1) for item in out.split("\0")[:-1])


def env_ref(value: Any) -> Any:
    """`${VAR}`, `${VAR:?msg}`, `${VAR:-x}` (Compose, shell) and `$(VAR)` (Kubernetes) -> `${VAR}`."""
    if isinstance(value, str):
        match = re.fullmatch(r"\$\{(\w+)(?::[?-].*)?\}|\$\((\w+)\)", value)
        if match:
            return "${%s}" % (match.group(1) or match.group(2))
    return value


def load_profile() -> dict:
    """serving/profiles/llama32-vision-2xl40s.toml: the source of truth for the vLLM flags."""
    return tomllib.loads(PROFILE.read_text())


def profile_flags(profile: dict) -> dict[str, Any]:
    """The flags the serving launcher derives from a profile: every key of [args] becomes
    `--key value` (true -> bare flag, a table -> JSON), and [model].source is `--model`."""
    return {"model": profile["model"]["source"], **profile["args"]}


# ---- Compose files layered with -f -------------------------------------------------------------------
class Reset(list):
    """A sequence tagged `!reset`: Compose drops what earlier files set for that key."""


class Override(list):
    """A sequence tagged `!override`: Compose replaces what earlier files set for that key."""


class _ComposeLoader(yaml.SafeLoader):
    """PyYAML's safe loader plus the two merge tags of Compose (v2.24+) on sequences; any other tag
    still fails, as it would in Compose."""


_ComposeLoader.add_constructor("!reset", lambda loader, node: Reset(loader.construct_sequence(node)))
_ComposeLoader.add_constructor("!override", lambda loader, node: Override(loader.construct_sequence(node)))


def load_compose(path: Path) -> dict:
    return yaml.load(path.read_text(), Loader=_ComposeLoader)


def _volume_target(volume: str | dict) -> str:
    return volume["target"] if isinstance(volume, dict) else volume.split(":")[1]


def layered_service(base: dict, override: dict, name: str) -> dict:
    """A service as Compose runs it with `-f base -f override`, for the keys these tests read, by the
    Compose Specification's merge rules: mappings merge key by key, `volumes` by target path, `ports`
    append unless reset, tagged sequences replace."""
    merged = dict(base["services"].get(name, {}))
    for key, value in override["services"].get(name, {}).items():
        old = merged.get(key)
        if isinstance(value, (Reset, Override)) or old is None:
            merged[key] = list(value) if isinstance(value, list) else value
        elif isinstance(value, dict):
            merged[key] = {**old, **value}
        elif key == "volumes":
            targets = {_volume_target(v) for v in value}
            merged[key] = [v for v in old if _volume_target(v) not in targets] + value
        elif isinstance(value, list):
            merged[key] = old + [v for v in value if v not in old]
        else:
            merged[key] = value
    return merged


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's `${VAR}`, `${VAR:?message}` and `${VAR:-default}` with the given values."""

    def one(match: re.Match) -> str:
        name, op, arg = match.group(1), match.group(2), match.group(3)
        if env.get(name):
            return env[name]
        assert op == ":-", f"${{{name}}} is required and unset"
        return arg

    return re.sub(r"\$\{(\w+)(?:(:[?-])([^}]*))?\}", one, value)


# ---- the project itself ----------------------------------------------------------------------------
def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def qdrant_client_version() -> tuple[int, int]:
    from importlib.metadata import version

    major, minor = version("qdrant-client").split(".")[:2]
    return int(major), int(minor)


# Stand-ins for secrets referenced as ${VAR} / $(VAR) / {{ RUNPOD_SECRET_x }}, in the shape each takes.
_SAMPLE_SECRETS = {"VISIONRAG_API_KEYS": "acme:sample-key-1,globex:sample-key-2"}


def gateway_settings_from(env: dict[str, Any]):
    """Build the gateway's real Settings from a deployment's VISIONRAG_* variables.

    Fails on a name Settings does not define: Settings ignores unknown variables, so a typo in a
    deployment file would otherwise be dropped without a word."""
    from gateway.settings import Settings

    kwargs = {}
    for name, value in env.items():
        if not name.startswith("VISIONRAG_"):
            continue
        field = name.removeprefix("VISIONRAG_").lower()
        assert field in Settings.model_fields, f"{name} is not a gateway setting (gateway/settings.py)"
        if isinstance(value, str) and re.fullmatch(
            r"\$\{\w+(:[?-][^}]*)?\}|\$\(\w+\)|\{\{ *RUNPOD_SECRET_\w+ *\}\}", value
        ):
            value = _SAMPLE_SECRETS.get(name, "sample-secret")
        kwargs[field] = value
    # _env_file=None: a developer's .env must not leak into what is being checked.
    return Settings(_env_file=None, **kwargs)


def visionrag_command(argv: list[str]) -> tuple[str, dict[str, Any]]:
    """A `visionrag ...` command line read by the CLI's own parser (click, under typer): the subcommand
    and its parameters, so that an option the CLI lacks fails here rather than in a container."""
    import click
    from typer.main import get_command

    from gateway.cli import app

    assert argv[0] in pyproject()["project"]["scripts"], f"{argv[0]} is not the package's command"
    group = get_command(app)
    name, *rest = argv[1:]
    command = group.get_command(click.Context(group), name)
    assert command is not None, f"visionrag has no command {name!r}"
    return name, command.make_context(name, list(rest)).params


# ---- Dockerfiles -----------------------------------------------------------------------------------
def parse_dockerfile(path: Path):
    """dockerfile-parse's reading of a Dockerfile (continuations, comments, JSON vs shell form).
    Given an in-memory copy: given a path, the parser may write the file back."""
    import io

    from dockerfile_parse import DockerfileParser

    return DockerfileParser(fileobj=io.BytesIO(path.read_bytes()))


def final_stage(parser) -> dict[str, list[str]]:
    """Instructions of the last stage (the image that ships), instruction -> values in order."""
    stages: list[dict[str, list[str]]] = []
    for item in parser.structure:
        if item["instruction"] == "FROM":
            stages.append({})
        if stages:
            stages[-1].setdefault(item["instruction"], []).append(item["value"])
    return stages[-1]

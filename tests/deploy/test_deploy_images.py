"""The two Dockerfiles (gateway; RunPod all-in-one) and the build context's .dockerignore, parsed."""

from __future__ import annotations

import json
import re
import shlex
import subprocess

import pytest
from packaging.specifiers import SpecifierSet

from tests.deploy.deploy_helpers import ROOT, assert_pinned, final_stage, parse_dockerfile, pyproject


# ---- gateway image ----------------------------------------------------------------------------------
def test_base_images_are_pinned_python_that_the_package_accepts(gateway_dockerfile):
    requires = SpecifierSet(pyproject()["project"]["requires-python"])
    for image in gateway_dockerfile.parent_images:
        assert_pinned(image)
        # An exact patch release: a rebuild months later gets the same interpreter.
        match = re.fullmatch(r"docker\.io/library/python:(\d+\.\d+\.\d+)-slim(-\w+)?", image)
        assert match, f"{image}: not an exact python:X.Y.Z-slim tag"
        assert match.group(1) in requires, f"{image} does not satisfy requires-python {requires}"
    assert gateway_dockerfile.is_multistage


def test_installs_the_repository_package_without_dev_extras(gateway_dockerfile):
    runs = [i["value"] for i in gateway_dockerfile.structure if i["instruction"] == "RUN"]
    installs = [cmd for cmd in runs if re.search(r"\bpip install\b", cmd)]
    # `pip install .` from a WORKDIR that holds pyproject.toml: the same package the tests install.
    assert any(re.search(r"\bpip install (--\S+ )*\.(\s|$)", cmd) for cmd in installs), installs
    assert not any("[dev]" in cmd or "-e " in cmd for cmd in installs), "dev extras or editable install"
    copies = " ".join(i["value"] for i in gateway_dockerfile.structure if i["instruction"] == "COPY")
    for needed in ("pyproject.toml", "README.md", "gateway", "serving"):
        assert re.search(rf"(^|\s){needed}(\s|$)", copies), f"{needed} is not copied into the build"


def test_runs_as_a_non_root_user(gateway_dockerfile):
    users = final_stage(gateway_dockerfile)["USER"]
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")
    # Numeric, so that Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
    assert user.isdigit() and int(user) >= 1000


def test_health_check_volume_port_and_command(gateway_dockerfile):
    stage = final_stage(gateway_dockerfile)
    (healthcheck,) = stage["HEALTHCHECK"]
    assert "/health" in healthcheck and "8080" in healthcheck
    volumes = [
        v
        for value in stage["VOLUME"]
        for v in (json.loads(value) if value.startswith("[") else value.split())
    ]
    assert gateway_dockerfile.envs["VISIONRAG_DATA_DIR"] in volumes, "the journal is not on a volume"
    assert stage["EXPOSE"] == ["8080"]
    (cmd,) = stage["CMD"]
    assert json.loads(cmd) == [
        "python",
        "-m",
        "uvicorn",
        "gateway.api.app:create_app",
        "--factory",
        "--host",
        "0.0.0.0",
        "--port",
        "8080",
    ]


def test_the_app_factory_the_image_runs_exists():
    # The CMD imports gateway.api.app:create_app; a rename would only show when the container starts.
    from gateway.api import app

    assert callable(app.create_app)


# ---- RunPod image --------------------------------------------------------------------------------
def test_runpod_image_runs_start_script_and_installs_the_package(runpod_dockerfile):
    for image in runpod_dockerfile.parent_images:
        assert_pinned(image)
    stage = final_stage(runpod_dockerfile)
    runs = " ".join(stage["RUN"])
    # Its own venv: vLLM's pins (fastapi, pydantic...) must not be overwritten by the gateway's.
    assert re.search(r"python3 -m venv (\S+)", runs)
    assert re.search(r"pip install (--\S+ )*\.(\s|&|$)", runs)
    (entrypoint,) = stage["ENTRYPOINT"]
    assert json.loads(entrypoint) == ["/opt/visionrag/start.sh"]
    assert any("deploy/runpod/start.sh /opt/visionrag/start.sh" in c for c in stage["COPY"])


def test_start_script_is_valid_bash():
    subprocess.run(["bash", "-n", str(ROOT / "deploy" / "runpod" / "start.sh")], check=True)


# ---- build context -----------------------------------------------------------------------------------
def dockerignore_excludes(patterns: list[str], path: str) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parent directories wins;
    `*` stays within one path segment, `**` spans any number."""

    def regex(pattern: str) -> re.Pattern:
        out, i = "", 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                out, i = out + "(.*/)?", i + 3
            elif pattern.startswith("**", i):
                out, i = out + ".*", i + 2
            elif pattern[i] == "*":
                out, i = out + "[^/]*", i + 1
            elif pattern[i] == "?":
                out, i = out + "[^/]", i + 1
            else:
                out, i = out + re.escape(pattern[i]), i + 1
        return re.compile(out)

    parts = path.split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    excluded = False
    for raw in patterns:
        negate = raw.startswith("!")
        pattern = raw.lstrip("!").strip("/")
        if any(regex(pattern).fullmatch(p) for p in prefixes):
            excluded = not negate
    return excluded


@pytest.fixture(scope="module")
def dockerignore() -> list[str]:
    # Both images are built with the repository root as context, so the root file is the one used.
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


@pytest.mark.parametrize(
    "path",
    [
        ".venv/bin/python",
        ".venv-vllm/lib/x.py",
        "models/tiny-vlm/model.safetensors",
        "data/journal.sqlite3",
        ".env",
        "deploy/.env",
        ".git/config",
        "gateway/__pycache__/app.cpython-311.pyc",
        "visionrag.egg-info/PKG-INFO",
    ],
)
def test_context_leaves_out(dockerignore, path):
    assert dockerignore_excludes(dockerignore, path), path


@pytest.mark.parametrize("dockerfile", ["deploy/gateway/Dockerfile", "deploy/runpod/Dockerfile"])
def test_context_keeps_everything_the_dockerfiles_copy(dockerignore, dockerfile):
    parser = parse_dockerfile(ROOT / dockerfile)
    for item in parser.structure:
        if item["instruction"] != "COPY" or item["value"].startswith("--from"):
            continue
        *sources, _dest = shlex.split(item["value"])
        for source in sources:
            assert (ROOT / source).exists(), f"{dockerfile}: COPY {source} does not exist"
            assert not dockerignore_excludes(dockerignore, source), f"{dockerfile}: {source} is ignored"
            if (ROOT / source).is_dir():
                for file in (ROOT / source).rglob("*.py"):
                    rel = file.relative_to(ROOT).as_posix()
                    if "__pycache__" not in rel:
                        assert not dockerignore_excludes(dockerignore, rel), rel

"""The three launchers of the two-L40S vLLM (Compose, Kubernetes, RunPod) against the serving profile.

serving/profiles/llama32-vision-2xl40s.toml is the source of truth; a flag changed there and
forgotten in a deployment file fails here.
"""

from __future__ import annotations

import json

import pytest

from tests.deploy.deploy_helpers import (
    DEPLOY,
    PROFILE,
    k8s_find,
    load_profile,
    normalized,
    parse_flags,
    profile_flags,
    runpod_vllm_env,
)

LAUNCHERS = ("compose", "k8s", "runpod")
# Where a server listens is the deployment's business, not the profile's.
DEPLOYMENT_ONLY = {"host", "port"}


def test_profile_exists():
    # Not a skip: the profile is part of the repository and these files claim to mirror it.
    assert PROFILE.exists(), f"{PROFILE} is missing"


@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_launcher_flags_equal_profile(launcher, vllm_argvs):
    flags = normalized(parse_flags(vllm_argvs[launcher]))
    expected = normalized(profile_flags(load_profile()))
    launched = {k: v for k, v in flags.items() if k not in DEPLOYMENT_ONLY}
    missing = {k: v for k, v in expected.items() if k not in launched}
    extra = {k: v for k, v in launched.items() if k not in expected}
    different = {k: (launched[k], v) for k, v in expected.items() if k in launched and launched[k] != v}
    assert not missing and not extra and not different, (
        f"{launcher}: missing {missing}, not in profile {extra}, (launcher, profile) differ {different}"
    )


# Compose and Kubernetes: 0.0.0.0 inside a container whose network admits only the gateway
# (internal network, NetworkPolicy). RunPod: the gateway shares vLLM's container, so loopback.
VLLM_HOST = {"compose": "0.0.0.0", "k8s": "0.0.0.0", "runpod": "127.0.0.1"}


@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_vllm_listens_where_the_gateway_looks(launcher, vllm_argvs):
    flags = parse_flags(vllm_argvs[launcher])
    assert flags["host"] == VLLM_HOST[launcher]
    # The port every upstream URL uses.
    assert flags["port"] == "8000"


def test_vllm_image_is_the_profiles(compose, k8s_objects):
    image = load_profile()["vllm"]["image"]
    assert image == "docker.io/vllm/vllm-openai:v0.10.2"  # the last vLLM that serves Llama 3.2 Vision
    assert compose["services"]["vllm"]["image"] == image
    deployment = k8s_find(k8s_objects, "Deployment", "vllm")
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == image
    runpod_from = [
        line.split()[1]
        for line in (DEPLOY / "runpod" / "Dockerfile").read_text().splitlines()
        if line.startswith("FROM ")
    ]
    assert runpod_from == [image]


def test_profile_env_reaches_every_launcher(compose, k8s_objects):
    """[env] of the profile: literal values must be set as-is, "${VAR}" ones must be passed through."""
    profile_env = load_profile()["env"]
    compose_env = compose["services"]["vllm"]["environment"]
    container = k8s_find(k8s_objects, "Deployment", "vllm")["spec"]["template"]["spec"]["containers"][0]
    k8s_env = {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}
    runpod_dockerfile = (DEPLOY / "runpod" / "Dockerfile").read_text()
    runpod_vllm_only = runpod_vllm_env()
    runpod_template_env = json.loads((DEPLOY / "runpod" / "pod-template.json").read_text())["env"]
    for name, value in profile_env.items():
        assert name in compose_env, f"compose: vllm lacks {name}"
        assert name in k8s_env, f"k8s: vllm lacks {name}"
        if value.startswith("${"):
            assert name in runpod_template_env, f"runpod: the pod template lacks {name}"
        else:
            assert str(compose_env[name]) == value
            assert k8s_env[name] == value
            # The image's ENV (both servers) or start.sh's VLLM_ENV (vLLM alone).
            assert f"{name}={value}" in runpod_dockerfile or runpod_vllm_only.get(name) == value, (
                f"runpod: neither the image nor start.sh's VLLM_ENV sets {name}={value}"
            )

"""Session fixtures: each deployment file parsed once."""

from __future__ import annotations

import json

import pytest
import yaml

from tests.deploy.deploy_helpers import (
    DEPLOY,
    K8S,
    k8s_find,
    load_yaml_docs,
    parse_dockerfile,
    runpod_vllm_argv,
)


@pytest.fixture(scope="session")
def compose() -> dict:
    return yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())


@pytest.fixture(scope="session")
def kustomization() -> dict:
    return yaml.safe_load((K8S / "kustomization.yaml").read_text())


@pytest.fixture(scope="session")
def k8s_objects(kustomization) -> list[dict]:
    """Every object `kubectl apply -k deploy/k8s` would create, plus the Secret template."""
    objects = []
    for resource in [*kustomization["resources"], "secrets.example.yaml"]:
        objects.extend(load_yaml_docs(K8S / resource))
    return objects


@pytest.fixture(scope="session")
def runpod_pod() -> dict:
    return json.loads((DEPLOY / "runpod" / "pod-template.json").read_text())


@pytest.fixture(scope="session")
def vllm_argvs(compose, k8s_objects) -> dict[str, list[str]]:
    deployment = k8s_find(k8s_objects, "Deployment", "vllm")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    return {
        "compose": list(compose["services"]["vllm"]["command"]),
        "k8s": list(container["args"]),
        "runpod": runpod_vllm_argv(),
    }


@pytest.fixture(scope="session")
def gateway_dockerfile():
    return parse_dockerfile(DEPLOY / "gateway" / "Dockerfile")


@pytest.fixture(scope="session")
def runpod_dockerfile():
    return parse_dockerfile(DEPLOY / "runpod" / "Dockerfile")

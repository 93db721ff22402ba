"""Session fixtures: each deployment file parsed once."""

from __future__ import annotations

import json
from importlib.resources import files

import jsonschema
import pytest
import yaml

from tests.deploy.deploy_helpers import (
    DEPLOY,
    K8S,
    K8S_SHARED,
    k8s_find,
    kustomize_build,
    load_compose,
    load_yaml_docs,
    parse_dockerfile,
    runpod_vllm_argv,
)

# The Compose Specification schema as vendored by check-jsonschema (already in the dev extra):
# check_jsonschema/builtin_schemas/vendor/compose-spec.json, from github.com/compose-spec/compose-spec
# (schema/compose-spec.json, Apache-2.0; licence in .../vendor/licenses/LICENSE.compose-spec).
COMPOSE_SCHEMA = "compose-spec.json"


@pytest.fixture(scope="session")
def compose() -> dict:
    return yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())


@pytest.fixture(scope="session")
def compose_shared() -> dict:
    """deploy/docker-compose.shared.yml alone, as written (it is layered over the base with -f)."""
    return load_compose(DEPLOY / "docker-compose.shared.yml")


@pytest.fixture(scope="session")
def validator():
    text = files("check_jsonschema.builtin_schemas.vendor").joinpath(COMPOSE_SCHEMA).read_text()
    schema = json.loads(text)
    assert schema["title"] == "Compose Specification"
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


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
def shared_kustomization() -> dict:
    return yaml.safe_load((K8S_SHARED / "kustomization.yaml").read_text())


@pytest.fixture(scope="session")
def shared_objects() -> list[dict]:
    """Every object `kubectl apply -k deploy/k8s-shared` would create, as kustomize itself renders the
    overlay, plus the Secret templates applied by hand beside it."""
    objects = kustomize_build(K8S_SHARED)
    for template in (K8S / "secrets.example.yaml", K8S_SHARED / "secrets.example.yaml",
                     K8S_SHARED / "database-secret.example.yaml"):
        objects.extend(load_yaml_docs(template))
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

"""deploy/k8s against Kubernetes' OpenAPI schemas (kubernetes-validate, offline) and against each other."""

from __future__ import annotations

import pytest
import yaml
from kubernetes_validate import utils as kv

from tests.deploy.deploy_helpers import (
    K8S,
    assert_pinned,
    config_env,
    container,
    final_stage,
    gateway_settings_from,
    k8s_find,
    pod_spec,
    qdrant_client_version,
    split_image,
)

# The oldest minor still common on managed clusters, and the newest kubernetes-validate bundles.
K8S_VERSIONS = ("1.31.0", kv.latest_version())
# Files in deploy/k8s that are not `kubectl apply -k` resources, and why.
NOT_RESOURCES = {
    "kustomization.yaml",  # the kustomization itself
    "qdrant-values.yaml",  # Helm values, not a manifest
    "secrets.example.yaml",  # applied by hand after filling in (never placeholders via -k)
    "ingress.example.yaml",  # the host name is the operator's; validated in test_deploy_production_review
}


def test_kubernetes_validate_works_offline():
    # The schemas ship inside the package; no network is involved in any test below.
    assert {"1.31.0", "1.37.0"} <= set(kv.all_versions())


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_every_object_validates_strictly(k8s_objects, version):
    # strict: unknown fields are errors (a misspelt `readinesProbe` would otherwise pass).
    failures = []
    for obj in k8s_objects:
        try:
            kv.validate(obj, version, strict=True)
        except kv.ValidationError as e:
            failures.append(f"{obj['kind']}/{obj['metadata']['name']} at {list(e.path)}: {e.message}")
    assert not failures, "\n".join(failures)


def test_strict_validation_has_teeth(k8s_objects):
    import copy

    broken = copy.deepcopy(k8s_find(k8s_objects, "Deployment", "vllm"))
    container(broken)["readinesProbe"] = container(broken).pop("readinessProbe")
    with pytest.raises(kv.ValidationError):
        kv.validate(broken, K8S_VERSIONS[-1], strict=True)


def test_kustomization_lists_every_manifest(kustomization):
    listed = set(kustomization["resources"])
    on_disk = {p.name for p in K8S.glob("*.yaml")} - NOT_RESOURCES
    assert listed == on_disk
    assert kustomization["namespace"] == "visionrag"


def test_every_image_is_pinned(k8s_objects):
    images = [
        c["image"]
        for obj in k8s_objects
        if obj["kind"] in ("Deployment", "StatefulSet")
        for c in pod_spec(obj)["containers"] + pod_spec(obj).get("initContainers", [])
    ]
    assert images
    for image in images:
        assert_pinned(image)


def test_vllm_gets_two_gpus_shared_memory_and_cache(k8s_objects):
    vllm = k8s_find(k8s_objects, "Deployment", "vllm")
    c = container(vllm)
    assert c["resources"]["limits"]["nvidia.com/gpu"] == 2
    volumes = {v["name"]: v for v in pod_spec(vllm)["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    assert volumes[mounts["/dev/shm"]]["emptyDir"]["medium"] == "Memory"
    claim = volumes[mounts["/root/.cache/huggingface"]]["persistentVolumeClaim"]["claimName"]
    k8s_find(k8s_objects, "PersistentVolumeClaim", claim)
    # RWO cache + exclusive GPUs: a rolling update would deadlock.
    assert vllm["spec"]["strategy"]["type"] == "Recreate"


def test_vllm_probes_allow_for_the_model_download(k8s_objects):
    c = container(k8s_find(k8s_objects, "Deployment", "vllm"))
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert c[probe]["httpGet"]["path"] == "/health", probe
    startup = c["startupProbe"]
    budget_s = startup.get("initialDelaySeconds", 0) + startup["periodSeconds"] * startup["failureThreshold"]
    assert budget_s >= 20 * 60, "the first start downloads ~21 GB"
    assert c["livenessProbe"]["initialDelaySeconds"] >= 120
    assert c["readinessProbe"]["initialDelaySeconds"] >= 60


def test_secret_references_resolve_to_the_template(k8s_objects):
    secret = k8s_find(k8s_objects, "Secret", "visionrag-secrets")
    # A template: placeholders only, never a real value in git.
    assert set(secret["stringData"].values()) == {"REPLACE_ME"}
    refs = [
        e["valueFrom"]["secretKeyRef"]
        for obj in k8s_objects
        if obj["kind"] in ("Deployment", "StatefulSet")
        for c in pod_spec(obj)["containers"]
        for e in c.get("env", [])
        if "secretKeyRef" in e.get("valueFrom", {})
    ]
    assert refs
    for ref in refs:
        assert ref["name"] == secret["metadata"]["name"]
        assert ref["key"] in secret["stringData"], ref
    values = yaml.safe_load((K8S / "qdrant-values.yaml").read_text())
    assert values["apiKey"]["valueFrom"]["secretKeyRef"]["key"] in secret["stringData"]


def test_gateway_runs_as_the_images_non_root_user(k8s_objects, gateway_dockerfile):
    gateway = k8s_find(k8s_objects, "StatefulSet", "gateway")
    pod_sc = pod_spec(gateway)["securityContext"]
    c_sc = container(gateway)["securityContext"]
    assert pod_sc["runAsNonRoot"] is True
    assert pod_sc["runAsUser"] != 0
    assert f"{pod_sc['runAsUser']}:{pod_sc['runAsGroup']}" == final_stage(gateway_dockerfile)["USER"][-1]
    assert c_sc["allowPrivilegeEscalation"] is False
    assert c_sc["capabilities"]["drop"] == ["ALL"]


def test_gateway_probes_health_and_ready(k8s_objects):
    c = container(k8s_find(k8s_objects, "StatefulSet", "gateway"))
    assert c["livenessProbe"]["httpGet"]["path"] == "/health"
    assert c["readinessProbe"]["httpGet"]["path"] == "/ready"


def test_each_gateway_replica_has_its_own_persistent_journal(k8s_objects):
    gateway = k8s_find(k8s_objects, "StatefulSet", "gateway")
    (claim,) = gateway["spec"]["volumeClaimTemplates"]
    env = config_env(k8s_objects, gateway)
    mounts = {m["mountPath"]: m for m in container(gateway)["volumeMounts"]}
    data_mount = mounts[env["VISIONRAG_DATA_DIR"]]
    assert data_mount["name"] == claim["metadata"]["name"] and "subPath" not in data_mount
    # A read-only root filesystem needs every written path mounted.
    assert container(gateway)["securityContext"]["readOnlyRootFilesystem"] is True
    cache = env["VISIONRAG_FASTEMBED_CACHE_DIR"]
    assert any(cache.startswith(path + "/") for path in mounts), "fastembed cache on the read-only root"
    assert "/tmp" in mounts
    # Scaling down must not delete journals.
    assert gateway["spec"]["persistentVolumeClaimRetentionPolicy"]["whenScaled"] == "Retain"


def test_hpa_scales_the_gateway_on_cpu(k8s_objects):
    hpa = k8s_find(k8s_objects, "HorizontalPodAutoscaler", "gateway")
    assert hpa["apiVersion"] == "autoscaling/v2"
    target = hpa["spec"]["scaleTargetRef"]
    gateway = k8s_find(k8s_objects, target["kind"], target["name"])
    assert hpa["spec"]["minReplicas"] >= 2 and hpa["spec"]["maxReplicas"] > hpa["spec"]["minReplicas"]
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"
    # Utilization is relative to the request: without one the HPA reports <unknown> and never scales.
    assert "cpu" in container(gateway)["resources"]["requests"]


def test_services_select_their_pods(k8s_objects):
    workloads = [o for o in k8s_objects if o["kind"] in ("Deployment", "StatefulSet")]
    for service in (o for o in k8s_objects if o["kind"] == "Service"):
        selector = service["spec"]["selector"]
        matched = [
            w for w in workloads if selector.items() <= w["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert matched, f"Service/{service['metadata']['name']} selects no pods"
        for port in service["spec"]["ports"]:
            names = {p.get("name") for w in matched for c in pod_spec(w)["containers"] for p in c["ports"]}
            assert port["targetPort"] in names


def test_gateway_environment_is_what_the_gateway_reads(k8s_objects):
    gateway = k8s_find(k8s_objects, "StatefulSet", "gateway")
    settings = gateway_settings_from(config_env(k8s_objects, gateway))
    # The upstream URL names the vLLM Service and its port.
    vllm_service = k8s_find(k8s_objects, "Service", "model-server")
    assert settings.upstream_urls == [f"http://model-server:{vllm_service['spec']['ports'][0]['port']}/v1"]
    assert settings.qdrant_url == "http://qdrant:6333"  # the Helm release named "qdrant"
    assert settings.upstream_api_key is not None and settings.qdrant_api_key is not None


def test_qdrant_helm_values(compose):
    values = yaml.safe_load((K8S / "qdrant-values.yaml").read_text())
    assert_pinned(f"qdrant/qdrant:{values['image']['tag']}")
    # One Qdrant version across Compose and Kubernetes, within a minor of the gateway's client.
    _, compose_tag, _ = split_image(compose["services"]["qdrant"]["image"])
    assert values["image"]["tag"] == compose_tag
    major, minor = (int(x) for x in compose_tag.lstrip("v").split(".")[:2])
    client = qdrant_client_version()
    assert major == client[0] and abs(minor - client[1]) <= 1
    assert values["persistence"]["size"].endswith("Gi")
    assert "memory" in values["resources"]["limits"]

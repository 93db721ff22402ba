"""deploy/k8s-shared, the overlay for shared state, as kustomize renders it (kubectl's built-in copy, no
cluster): strictly valid objects, a gateway Deployment that keeps nothing, workers scaled on the backlog,
and the settings contract of a shared journal. Its NetworkPolicies are in test_deploy_k8s_shared_network.

The CloudNativePG Cluster and the KEDA ScaledObject are custom resources: Kubernetes' OpenAPI schemas do
not know them and their CRDs are not vendored here, so they are not schema-validated. What is checked is
their kind and apiVersion and every field these manifests rely on, against the objects they point at."""

from __future__ import annotations

import copy

import pytest
import yaml
from kubernetes_validate import utils as kv

from gateway.settings import Settings
from tests.deploy.deploy_helpers import (
    K8S,
    K8S_SHARED,
    assert_pinned,
    config_env,
    container,
    final_stage,
    gateway_settings_from,
    k8s_find,
    load_yaml_docs,
    pod_spec,
    visionrag_command,
)
from tests.deploy.test_deploy_production_review import collisions

K8S_VERSIONS = ("1.31.0", kv.latest_version())
# Files in deploy/k8s-shared that `kubectl apply -k` does not take, and why.
NOT_RESOURCES = {
    "kustomization.yaml",
    "secrets.example.yaml",  # filled in and applied by hand
    "database-secret.example.yaml",  # a managed database only; CloudNativePG writes its own
    "postgres-cnpg.yaml",  # needs the operator's CRDs; a managed database replaces it
    "worker-keda.example.yaml",  # instead of worker-hpa.yaml, where KEDA is installed
}
# The image the gateway and the workers run (deploy/gateway/Dockerfile).
VISIONRAG_IMAGE = "registry.example.com/visionrag/gateway:0.1.0"


def workloads(objects: list[dict]) -> list[dict]:
    return [o for o in objects if o["kind"] in ("Deployment", "StatefulSet", "Job")]


def visionrag_workloads(objects: list[dict]) -> list[dict]:
    return [w for w in workloads(objects) if container(w)["image"] == VISIONRAG_IMAGE]


def secret_ref(workload: dict, name: str) -> dict:
    (entry,) = [e for e in container(workload)["env"] if e["name"] == name]
    return entry["valueFrom"]["secretKeyRef"]


def crd(name: str) -> dict:
    (obj,) = load_yaml_docs(K8S_SHARED / name)
    return obj


# ---- the overlay renders into valid objects ----------------------------------------------------------
@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_every_object_validates_strictly(shared_objects, version):
    failures = []
    for obj in shared_objects:
        try:
            kv.validate(obj, version, strict=True)
        except kv.ValidationError as e:
            failures.append(f"{obj['kind']}/{obj['metadata']['name']} at {list(e.path)}: {e.message}")
    assert not failures, "\n".join(failures)


def test_the_overlay_lists_every_manifest_and_builds_on_the_base(shared_kustomization):
    resources = shared_kustomization["resources"]
    assert "../k8s" in resources
    on_disk = {p.name for p in K8S_SHARED.glob("*.yaml")} - NOT_RESOURCES
    assert set(resources) - {"../k8s"} == on_disk
    assert shared_kustomization["namespace"] == "visionrag"
    # The same image pin as the base, or `kustomize edit set image` on one would miss the other.
    base = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert shared_kustomization["images"] == base["images"]


def test_every_image_is_pinned(shared_objects):
    for workload in workloads(shared_objects):
        for c in pod_spec(workload)["containers"] + pod_spec(workload).get("initContainers", []):
            assert_pinned(c["image"])
    assert_pinned(crd("postgres-cnpg.yaml")["spec"]["imageName"])


def test_services_select_their_pods_and_inject_nothing_read(shared_objects):
    for service in (o for o in shared_objects if o["kind"] == "Service"):
        selector = service["spec"]["selector"]
        matched = [
            w
            for w in workloads(shared_objects)
            if selector.items() <= w["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert matched, f"Service/{service['metadata']['name']} selects no pods"
        names = {p.get("name") for w in matched for c in pod_spec(w)["containers"] for p in c["ports"]}
        assert {p["targetPort"] for p in service["spec"]["ports"]} <= names
        assert not collisions(service), service["metadata"]["name"]


# ---- the gateway keeps nothing of its own ------------------------------------------------------------
def test_the_gateway_is_a_deployment_of_several_replicas(shared_objects):
    assert not [o for o in shared_objects if o["kind"] == "StatefulSet"]
    assert not [o for o in shared_objects if o["metadata"]["name"] == "gateway-headless"]
    gateway = k8s_find(shared_objects, "Deployment", "gateway")
    assert gateway["spec"]["replicas"] >= 2
    hpa = k8s_find(shared_objects, "HorizontalPodAutoscaler", "gateway")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "gateway"}
    assert hpa["spec"]["minReplicas"] >= 2
    # A rollout never takes a serving replica away before its successor is ready.
    assert gateway["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_the_gateway_has_no_volume_but_scratch(shared_objects):
    gateway = k8s_find(shared_objects, "Deployment", "gateway")
    spec = pod_spec(gateway)
    assert "volumeClaimTemplates" not in gateway["spec"]
    assert not [
        o
        for o in shared_objects
        if o["kind"] == "PersistentVolumeClaim"
        and o["metadata"].get("labels", {}).get("app.kubernetes.io/name") == "gateway"
    ]
    # Only emptyDirs, bounded, which die with the pod: the model cache and /tmp under a read-only root.
    for volume in spec["volumes"]:
        assert set(volume) == {"name", "emptyDir"}, volume
        assert "sizeLimit" in volume["emptyDir"], volume["name"]
    env = config_env(shared_objects, gateway)
    mounts = [m["mountPath"] for m in container(gateway)["volumeMounts"]]
    # The data dir is on no mount, so a write there fails on the read-only root instead of keeping
    # state in one pod.
    assert not any(
        env["VISIONRAG_DATA_DIR"] == m or env["VISIONRAG_DATA_DIR"].startswith(m + "/") for m in mounts
    )
    assert container(gateway)["securityContext"]["readOnlyRootFilesystem"] is True
    assert any(env["VISIONRAG_FASTEMBED_CACHE_DIR"].startswith(m + "/") for m in mounts)
    assert "/tmp" in mounts


def test_the_gateway_deployment_runs_the_embedded_statefulsets_container(shared_objects, k8s_objects):
    """Same image, probes, security, ports and drain as deploy/k8s/gateway.yaml: only the state moved."""
    deployment = k8s_find(shared_objects, "Deployment", "gateway")
    statefulset = k8s_find(k8s_objects, "StatefulSet", "gateway")
    shared_c, embedded_c = container(deployment), container(statefulset)
    for key in (
        "image",
        "securityContext",
        "envFrom",
        "ports",
        "lifecycle",
        "resources",
        "startupProbe",
        "livenessProbe",
        "readinessProbe",
    ):
        assert shared_c[key] == embedded_c[key], key
    assert embedded_c["env"] == shared_c["env"][: len(embedded_c["env"])]
    for key in ("securityContext", "terminationGracePeriodSeconds", "enableServiceLinks"):
        assert pod_spec(deployment)[key] == pod_spec(statefulset)[key], key
    assert (
        deployment["spec"]["template"]["metadata"]["labels"]
        == statefulset["spec"]["template"]["metadata"]["labels"]
    )


def test_the_base_budget_and_service_select_the_deployment(shared_objects):
    labels = k8s_find(shared_objects, "Deployment", "gateway")["spec"]["template"]["metadata"]["labels"]
    budget = k8s_find(shared_objects, "PodDisruptionBudget", "gateway")
    assert budget["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert k8s_find(shared_objects, "Service", "gateway")["spec"]["selector"].items() <= labels.items()


# ---- every VisionRAG container: resources and hardening ----------------------------------------------
def test_gateway_and_worker_are_hardened_alike(shared_objects, gateway_dockerfile):
    found = {w["metadata"]["name"] for w in visionrag_workloads(shared_objects)}
    assert found == {"gateway", "worker"}
    for workload in visionrag_workloads(shared_objects):
        name, spec = workload["metadata"]["name"], pod_spec(workload)
        c = container(workload)
        requests, limits = c["resources"]["requests"], c["resources"]["limits"]
        assert {"cpu", "memory"} <= set(requests) and "memory" in limits, name
        sc = c["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True, name
        assert sc["capabilities"]["drop"] == ["ALL"], name
        pod_sc = spec["securityContext"]
        assert pod_sc["runAsNonRoot"] is True and pod_sc["seccompProfile"]["type"] == "RuntimeDefault", name
        assert f"{pod_sc['runAsUser']}:{pod_sc['runAsGroup']}" == final_stage(gateway_dockerfile)["USER"][-1]
        assert spec["enableServiceLinks"] is False and spec["automountServiceAccountToken"] is False, name
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            assert probe in c, (name, probe)


# ---- the settings contract of a shared journal --------------------------------------------------------
def test_gateway_and_worker_share_journal_bucket_and_qdrant_server(shared_objects):
    for name in ("gateway", "worker"):
        workload = k8s_find(shared_objects, "Deployment", name)
        settings = gateway_settings_from(config_env(shared_objects, workload))
        assert settings.shared_journal, name
        assert settings.blob_url.startswith("s3://"), name
        # A shared journal with the embedded Qdrant Edge is refused at start-up while memory is on.
        assert settings.memory_enabled and settings.qdrant_url == "http://qdrant:6333", name
        env = config_env(shared_objects, workload)
        assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"} <= set(env), name
        for variable in ("VISIONRAG_DATABASE_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            assert (
                "secretKeyRef"
                in next(e for e in container(workload)["env"] if e["name"] == variable)["valueFrom"]
            )
    # The gateways leave ingest to the workers (VISIONRAG_GATEWAY_INGEST unset = auto = off here).
    gateway = gateway_settings_from(
        config_env(shared_objects, k8s_find(shared_objects, "Deployment", "gateway"))
    )
    assert gateway.gateway_ingest is None and not gateway.ingest_here


def test_the_worker_runs_single_threaded_int8_with_metrics(shared_objects):
    worker = k8s_find(shared_objects, "Deployment", "worker")
    c = container(worker)
    name, params = visionrag_command(c["command"])
    assert name == "worker"
    # Its metrics on the pod's address, not the CLI's loopback default, or no probe or scrape reaches them.
    assert params["metrics_host"] == "0.0.0.0"
    settings = gateway_settings_from(config_env(shared_objects, worker))
    assert settings.embed_threads == 1 and settings.clip_int8 is True
    # One embedding thread: one CPU is what it uses, and what the scheduler should reserve.
    assert c["resources"]["requests"]["cpu"] == "1"
    (port,) = c["ports"]
    assert port == {"name": "metrics", "containerPort": params["metrics_port"]}
    # It serves only metrics: the probes ask that port.
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        check = c[probe].get("httpGet") or c[probe]["tcpSocket"]
        assert check["port"] == "metrics", probe
    # On SIGTERM it finishes its batch and hands back its claim; no client stream to drain.
    assert pod_spec(worker)["terminationGracePeriodSeconds"] >= 30
    # Neither a gateway key nor vLLM's: a worker serves no client and asks no model.
    names = {e["name"] for e in c["env"]}
    assert not names & {"VISIONRAG_API_KEYS", "VISIONRAG_UPSTREAM_API_KEY"}


def test_secret_references_resolve_to_a_template(shared_objects):
    secrets = {o["metadata"]["name"]: o for o in shared_objects if o["kind"] == "Secret"}
    for secret in secrets.values():
        assert set(secret["stringData"].values()) == {"REPLACE_ME"}, secret["metadata"]["name"]
    for workload in workloads(shared_objects):
        for e in container(workload).get("env", []):
            ref = e.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                assert ref["key"] in secrets[ref["name"]]["stringData"], (workload["metadata"]["name"], ref)


def test_the_database_secret_is_the_one_cloudnativepg_writes(shared_objects):
    cluster = crd("postgres-cnpg.yaml")
    for name in ("gateway", "worker"):
        ref = secret_ref(k8s_find(shared_objects, "Deployment", name), "VISIONRAG_DATABASE_URL")
        # CloudNativePG names the application Secret `<cluster>-app` and puts the libpq URI under `uri`.
        assert ref == {"name": f"{cluster['metadata']['name']}-app", "key": "uri"}
    (template,) = load_yaml_docs(K8S_SHARED / "database-secret.example.yaml")
    assert template["metadata"]["name"] == f"{cluster['metadata']['name']}-app"


# ---- PostgreSQL: the CloudNativePG Cluster (a CRD: fields checked, no schema) -------------------------
def test_the_cloudnativepg_cluster(shared_objects):
    cluster = crd("postgres-cnpg.yaml")
    assert (cluster["apiVersion"], cluster["kind"]) == ("postgresql.cnpg.io/v1", "Cluster")
    spec = cluster["spec"]
    assert spec["instances"] >= 2, "a standby to fail over to"
    assert spec["bootstrap"]["initdb"]["database"] == spec["bootstrap"]["initdb"]["owner"] == "visionrag"
    assert spec["storage"]["size"].endswith("Gi")
    assert spec["enableSuperuserAccess"] is False
    # Every gateway and worker at its HPA maximum holds a full pool.
    pool = Settings.model_fields["database_pool_size"].default
    most = sum(
        k8s_find(shared_objects, "HorizontalPodAutoscaler", n)["spec"]["maxReplicas"]
        for n in ("gateway", "worker")
    )
    assert int(spec["postgresql"]["parameters"]["max_connections"]) >= pool * most + 10
    # Its pods carry cnpg.io/cluster=<name>, which the NetworkPolicies select.
    policy = k8s_find(shared_objects, "NetworkPolicy", "postgres")
    assert policy["spec"]["podSelector"]["matchLabels"] == {"cnpg.io/cluster": cluster["metadata"]["name"]}


# ---- workers scale on the backlog ---------------------------------------------------------------------
def test_the_worker_hpa_scales_on_the_external_backlog_metric(shared_objects):
    hpa = k8s_find(shared_objects, "HorizontalPodAutoscaler", "worker")
    assert hpa["apiVersion"] == "autoscaling/v2"
    target = hpa["spec"]["scaleTargetRef"]
    k8s_find(shared_objects, target["kind"], target["name"])
    assert target == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "worker"}
    # Never zero: the workers also finish deletions and run retention.
    assert hpa["spec"]["minReplicas"] >= 1 and hpa["spec"]["maxReplicas"] > hpa["spec"]["minReplicas"]
    (metric,) = hpa["spec"]["metrics"]
    assert metric["type"] == "External"
    assert metric["external"]["metric"]["name"] == "visionrag_ingest_backlog"
    # AverageValue: the backlog divided among the workers, not a utilization of a request.
    assert metric["external"]["target"]["type"] == "AverageValue"
    assert int(metric["external"]["target"]["averageValue"]) > 0


def test_the_keda_example_is_the_same_rule(shared_objects, shared_kustomization):
    """A CRD: kind, apiVersion and the fields KEDA reads, checked against the HPA it replaces."""
    scaled = crd("worker-keda.example.yaml")
    assert (scaled["apiVersion"], scaled["kind"]) == ("keda.sh/v1alpha1", "ScaledObject")
    spec = scaled["spec"]
    hpa = k8s_find(shared_objects, "HorizontalPodAutoscaler", "worker")
    assert spec["scaleTargetRef"] == hpa["spec"]["scaleTargetRef"]
    assert spec["minReplicaCount"] == hpa["spec"]["minReplicas"] >= 1
    assert spec["maxReplicaCount"] == hpa["spec"]["maxReplicas"]
    (trigger,) = spec["triggers"]
    assert trigger["type"] == "prometheus"
    # Every pod reports the same backlog: a sum would count it once per pod.
    assert trigger["metadata"]["query"].startswith("max(visionrag_ingest_backlog")
    assert trigger["metadata"]["threshold"] == hpa["spec"]["metrics"][0]["external"]["target"]["averageValue"]
    assert trigger["metadata"]["serverAddress"].startswith("http")
    # The HPA that KEDA makes holds workers as long as worker-hpa.yaml does.
    assert spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"] == hpa["spec"]["behavior"]
    # Never both: KEDA makes its own HPA for the same Deployment.
    assert "worker-keda.example.yaml" not in shared_kustomization["resources"]


def test_no_disruption_budget_blocks_a_node_drain(shared_objects):
    for name in ("gateway", "worker"):
        spec = k8s_find(shared_objects, "PodDisruptionBudget", name)["spec"]
        assert "minAvailable" not in spec and spec["maxUnavailable"] >= 1
        assert spec["unhealthyPodEvictionPolicy"] == "AlwaysAllow"


def test_strict_validation_has_teeth(shared_objects):
    broken = copy.deepcopy(k8s_find(shared_objects, "Deployment", "worker"))
    container(broken)["livenesProbe"] = container(broken).pop("livenessProbe")
    with pytest.raises(kv.ValidationError):
        kv.validate(broken, K8S_VERSIONS[-1], strict=True)

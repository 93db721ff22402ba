"""deploy/k8s/networkpolicy.yaml: only the gateway reaches vLLM and Qdrant; vLLM reaches only DNS, and
only the model-download Job reaches public HTTPS. Evaluated by tests/deploy/netpol.py from the manifests (no cluster); the schema
validation of the same objects is in test_deploy_k8s.py."""

from __future__ import annotations

import copy

import pytest

from tests.deploy.deploy_helpers import k8s_find
from tests.deploy.netpol import address, allowed, pod

NS = "visionrag"
GATEWAY = pod(NS, **{"app.kubernetes.io/name": "gateway", "app.kubernetes.io/part-of": "visionrag"})
VLLM = pod(NS, **{"app.kubernetes.io/name": "vllm", "app.kubernetes.io/part-of": "visionrag"})
# The selector labels of Qdrant's official Helm chart for the release "qdrant" (qdrant-values.yaml).
QDRANT = pod(
    NS, **{"app": "qdrant", "app.kubernetes.io/name": "qdrant", "app.kubernetes.io/instance": "qdrant"}
)
DNS = pod("kube-system", **{"k8s-app": "kube-dns"})
# Pods that must not reach vLLM or Qdrant: anything else in the namespace (a debug pod, one that
# copies the part-of label), and a pod wearing the gateway's labels in another namespace.
STRANGERS = {
    "debug pod": pod(NS, run="debug"),
    "part-of label": pod(NS, **{"app.kubernetes.io/part-of": "visionrag"}),
    "gateway labels, other namespace": pod("default", **{"app.kubernetes.io/name": "gateway"}),
    "outside the cluster": address("203.0.113.7"),
}
PUBLIC = address("18.160.1.1")  # a public address, as Hugging Face's CDN resolves to
METADATA = address("169.254.169.254")  # the cloud metadata service
CLUSTER = address("10.0.3.4")  # some other pod or service IP


@pytest.fixture(scope="module")
def policies(k8s_objects, kustomization) -> list[dict]:
    found = []
    for obj in k8s_objects:
        if obj["kind"] == "NetworkPolicy":
            obj = copy.deepcopy(obj)
            obj["metadata"].setdefault("namespace", kustomization["namespace"])
            found.append(obj)
    return found


def test_the_namespace_denies_by_default(policies):
    default = [p for p in policies if p["spec"]["podSelector"] == {}]
    assert any(
        set(p["spec"]["policyTypes"]) == {"Ingress", "Egress"} and not p["spec"].get("ingress")
        and not p["spec"].get("egress") for p in default
    )  # fmt: skip
    # So a pod no other policy names can neither be reached nor reach anything but DNS.
    stray = STRANGERS["debug pod"]
    assert not allowed(policies, GATEWAY, stray, 8080) and not allowed(policies, stray, PUBLIC, 443)
    assert allowed(policies, stray, DNS, 53, "UDP")


def test_policies_select_the_real_workloads(k8s_objects, policies):
    # A label typo would make a policy select nothing and silently allow nothing (or everything).
    for name in ("vllm", "gateway"):
        kind = "Deployment" if name == "vllm" else "StatefulSet"
        labels = k8s_find(k8s_objects, kind, name)["spec"]["template"]["metadata"]["labels"]
        policy = next(p for p in policies if p["metadata"]["name"] == name)
        assert policy["spec"]["podSelector"]["matchLabels"].items() <= labels.items()
    vllm_service = k8s_find(k8s_objects, "Service", "model-server")
    assert vllm_service["spec"]["ports"][0]["port"] == 8000


def test_only_gateway_pods_reach_vllm(policies):
    assert allowed(policies, GATEWAY, VLLM, 8000)
    for who, stranger in STRANGERS.items():
        assert not allowed(policies, stranger, VLLM, 8000), who
    assert not allowed(policies, QDRANT, VLLM, 8000)
    assert not allowed(policies, GATEWAY, VLLM, 8001)  # only vLLM's API port


def test_only_gateway_pods_reach_qdrant(policies):
    for port in (6333, 6334):
        assert allowed(policies, GATEWAY, QDRANT, port)
        assert not allowed(policies, VLLM, QDRANT, port)
        for who, stranger in STRANGERS.items():
            assert not allowed(policies, stranger, QDRANT, port), who
    # Qdrant's replicas talk to each other (cluster mode); nobody else uses that port.
    assert allowed(policies, QDRANT, QDRANT, 6335)
    assert not allowed(policies, GATEWAY, QDRANT, 6335)


def test_vllm_has_no_egress_but_dns(policies):
    assert allowed(policies, VLLM, DNS, 53, "UDP") and allowed(policies, VLLM, DNS, 53, "TCP")
    # It starts offline from the weights the model-download Job fetched: no media URL gets out.
    for target in (PUBLIC, METADATA, CLUSTER, address("192.168.1.10"), address("100.64.0.1")):
        for port in (80, 443):
            assert not allowed(policies, VLLM, target, port), (target.ip, port)
    for target, port in ((GATEWAY, 8080), (QDRANT, 6333)):
        assert not allowed(policies, VLLM, target, port)


def test_only_the_download_job_reaches_hugging_face(k8s_objects, policies):
    labels = k8s_find(k8s_objects, "Job", "model-download")["spec"]["template"]["metadata"]["labels"]
    download = pod(NS, **labels)
    assert allowed(policies, download, PUBLIC, 443)
    assert not allowed(policies, download, PUBLIC, 80)
    for target in (METADATA, CLUSTER, address("192.168.1.10")):
        assert not allowed(policies, download, target, 443), target.ip
    assert not allowed(policies, download, VLLM, 8000) and not allowed(policies, download, QDRANT, 6333)
    for who, stranger in STRANGERS.items():
        assert not allowed(policies, stranger, download, 8000), who


def test_vllm_starts_offline_after_the_download(k8s_objects):
    from tests.deploy.deploy_helpers import load_profile

    revision = load_profile()["args"]["revision"]
    job = k8s_find(k8s_objects, "Job", "model-download")["spec"]["template"]["spec"]
    vllm = k8s_find(k8s_objects, "Deployment", "vllm")["spec"]["template"]["spec"]
    (download,) = job["containers"]
    assert f'revision = "{revision}"' in download["command"][-1]
    (wait,) = vllm["initContainers"]
    assert f"visionrag-{revision}.complete" in wait["command"][-1]
    assert "visionrag-{revision}.complete" in download["command"][-1]
    env = {e["name"]: e.get("value") for e in vllm["containers"][0]["env"]}
    assert env["HF_HUB_OFFLINE"] == "1"
    # Same ReadWriteOnce claim, same node.
    claims = [{v["persistentVolumeClaim"]["claimName"] for v in spec["volumes"] if "persistentVolumeClaim" in v}
              for spec in (job, vllm)]
    assert claims[0] == claims[1] == {"vllm-model-cache"}
    assert job["nodeSelector"] == vllm["nodeSelector"]


def test_gateway_is_open_to_clients_and_reaches_its_upstreams(policies):
    assert allowed(policies, STRANGERS["outside the cluster"], GATEWAY, 8080)
    assert allowed(policies, GATEWAY, PUBLIC, 443)  # CLIP download, clients' image URLs
    assert not allowed(policies, GATEWAY, METADATA, 80) and not allowed(policies, GATEWAY, CLUSTER, 443)


def test_the_evaluator_has_teeth(policies):
    # Without the vllm policy the default deny shuts the gateway out too; without any policy,
    # everyone gets in. Both prove that the allows above come from the policies, not the evaluator.
    without_vllm = [p for p in policies if p["metadata"]["name"] != "vllm"]
    assert not allowed(without_vllm, GATEWAY, VLLM, 8000)
    assert allowed([], STRANGERS["debug pod"], VLLM, 8000)

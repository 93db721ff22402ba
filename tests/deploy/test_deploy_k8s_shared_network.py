"""The NetworkPolicies of deploy/k8s-shared (the base's plus networkpolicy.yaml there), as kustomize renders
them: PostgreSQL takes connections from gateways and workers alone, a worker takes only Prometheus'
scrapes and reaches only its stores, and the base's guarantees still hold. Evaluated by
tests/deploy/netpol.py (no cluster)."""

from __future__ import annotations

import pytest

from tests.deploy.deploy_helpers import k8s_find
from tests.deploy.netpol import address, allowed, pod

NS = "visionrag"
PART_OF = {"app.kubernetes.io/part-of": "visionrag"}
GATEWAY = pod(NS, **{"app.kubernetes.io/name": "gateway"}, **PART_OF)
WORKER = pod(NS, **{"app.kubernetes.io/name": "worker"}, **PART_OF)
VLLM = pod(NS, **{"app.kubernetes.io/name": "vllm"}, **PART_OF)
QDRANT = pod(
    NS, **{"app": "qdrant", "app.kubernetes.io/name": "qdrant", "app.kubernetes.io/instance": "qdrant"}
)
# Labels CloudNativePG puts on the instances of the Cluster `visionrag-db`, and on its operator's pod.
POSTGRES = pod(
    NS, **{"cnpg.io/cluster": "visionrag-db", "cnpg.io/instanceRole": "primary", "role": "primary"}
)
OPERATOR = pod("cnpg-system", **{"app.kubernetes.io/name": "cloudnative-pg"})
# kube-prometheus-stack's Prometheus pods.
PROMETHEUS = pod("monitoring", **{"app.kubernetes.io/name": "prometheus"})
MINIO = pod(NS, **{"app.kubernetes.io/name": "minio"})
DNS = pod("kube-system", **{"k8s-app": "kube-dns"})
STRANGERS = {
    "debug pod": pod(NS, run="debug"),
    "part-of label": pod(NS, **PART_OF),
    "gateway labels, other namespace": pod("default", **{"app.kubernetes.io/name": "gateway"}),
    "prometheus labels, other namespace": pod("default", **{"app.kubernetes.io/name": "prometheus"}),
    "outside the cluster": address("203.0.113.7"),
}
PUBLIC = address("52.216.1.1")  # a public address, as AWS S3 resolves to
METADATA = address("169.254.169.254")
CLUSTER = address("10.0.3.4")
API_SERVER = address("10.0.0.1")  # the Kubernetes API's endpoint, a private address on most clusters


@pytest.fixture(scope="module")
def policies(shared_objects) -> list[dict]:
    found = [o for o in shared_objects if o["kind"] == "NetworkPolicy"]
    assert all(p["metadata"]["namespace"] == NS for p in found)
    return found


def test_policies_select_the_real_workloads(shared_objects, policies):
    for name in ("gateway", "worker"):
        labels = k8s_find(shared_objects, "Deployment", name)["spec"]["template"]["metadata"]["labels"]
        selecting = [
            p
            for p in policies
            if p["spec"]["podSelector"].get("matchLabels", {}).items() <= labels.items()
            and p["spec"]["podSelector"]
        ]
        assert selecting, name
    assert {p["metadata"]["name"] for p in policies} >= {
        "worker",
        "postgres",
        "gateway-shared-state",
        "qdrant-from-worker",
        "minio",
    }


def test_only_gateways_and_workers_reach_postgres(policies):
    assert allowed(policies, GATEWAY, POSTGRES, 5432)
    assert allowed(policies, WORKER, POSTGRES, 5432)
    for who, stranger in STRANGERS.items():
        assert not allowed(policies, stranger, POSTGRES, 5432), who
    for other in (VLLM, QDRANT, PROMETHEUS, MINIO):
        assert not allowed(policies, other, POSTGRES, 5432)
    # Clients get the SQL port only, not the instance manager's.
    assert not allowed(policies, GATEWAY, POSTGRES, 8000) and not allowed(policies, WORKER, POSTGRES, 8000)


def test_cloudnativepg_can_run_its_cluster(policies):
    # Its networking guide: the operator reaches every instance on 5432 and 8000, instances each other.
    for port in (5432, 8000):
        assert allowed(policies, OPERATOR, POSTGRES, port)
        assert allowed(policies, POSTGRES, POSTGRES, port)
    # The instance manager reports to the Kubernetes API; backups go to object storage.
    assert allowed(policies, POSTGRES, API_SERVER, 443) and allowed(policies, POSTGRES, API_SERVER, 6443)
    assert allowed(policies, POSTGRES, PUBLIC, 443)
    assert not allowed(policies, POSTGRES, METADATA, 80) and not allowed(policies, POSTGRES, METADATA, 443)
    assert not allowed(
        policies, pod("default", **{"app.kubernetes.io/name": "cloudnative-pg"}), POSTGRES, 8000
    )


def test_only_prometheus_scrapes_the_workers(policies):
    assert allowed(policies, PROMETHEUS, WORKER, 9100)
    assert not allowed(policies, PROMETHEUS, WORKER, 8080)
    for who, stranger in STRANGERS.items():
        assert not allowed(policies, stranger, WORKER, 9100), who
    for other in (GATEWAY, VLLM, POSTGRES):
        assert not allowed(policies, other, WORKER, 9100)


def test_workers_reach_their_stores_and_nothing_else(policies):
    assert allowed(policies, WORKER, POSTGRES, 5432)
    assert allowed(policies, WORKER, QDRANT, 6333) and allowed(policies, WORKER, QDRANT, 6334)
    assert allowed(policies, WORKER, MINIO, 9000)
    assert allowed(policies, WORKER, PUBLIC, 443)  # AWS S3 / R2 / GCS, the model download
    assert allowed(policies, WORKER, DNS, 53, "UDP")
    # No model, no client, no other cluster address, no metadata service, no plain HTTP out.
    assert not allowed(policies, WORKER, VLLM, 8000)
    assert not allowed(policies, WORKER, GATEWAY, 8080)
    assert not allowed(policies, WORKER, QDRANT, 6335)
    for target, port in ((METADATA, 80), (METADATA, 443), (CLUSTER, 443), (PUBLIC, 80), (API_SERVER, 443)):
        assert not allowed(policies, WORKER, target, port), (target.ip, port)


def test_only_gateways_and_workers_reach_an_in_cluster_minio(policies):
    for who, stranger in STRANGERS.items():
        assert not allowed(policies, stranger, MINIO, 9000), who
    assert not allowed(policies, VLLM, MINIO, 9000) and not allowed(policies, GATEWAY, MINIO, 9001)


def test_gateways_reach_the_shared_state(policies):
    assert allowed(policies, GATEWAY, POSTGRES, 5432)
    assert allowed(policies, GATEWAY, MINIO, 9000)
    assert allowed(policies, GATEWAY, PUBLIC, 443)
    assert allowed(policies, GATEWAY, VLLM, 8000) and allowed(policies, GATEWAY, QDRANT, 6333)
    assert not allowed(policies, GATEWAY, METADATA, 80) and not allowed(policies, GATEWAY, CLUSTER, 443)


def test_the_base_guarantees_still_hold(policies):
    # vLLM: the gateways alone, and no way out; Qdrant: gateways and workers alone.
    for who, stranger in STRANGERS.items():
        assert not allowed(policies, stranger, VLLM, 8000), who
        assert not allowed(policies, stranger, QDRANT, 6333), who
    assert not allowed(policies, POSTGRES, VLLM, 8000) and not allowed(policies, POSTGRES, QDRANT, 6333)
    assert not allowed(policies, VLLM, PUBLIC, 443) and not allowed(policies, VLLM, POSTGRES, 5432)
    # Nothing in the namespace is reached unless a policy says so.
    assert not allowed(policies, GATEWAY, STRANGERS["debug pod"], 8080)


def test_the_evaluator_has_teeth(policies):
    without = [p for p in policies if p["metadata"]["name"] != "postgres"]
    # With no policy selecting PostgreSQL's pods the namespace's default deny shuts everyone out...
    assert not allowed(without, GATEWAY, POSTGRES, 5432)
    # ...and with the worker's removed, its egress falls back to the default deny as well.
    assert not allowed([p for p in policies if p["metadata"]["name"] != "worker"], WORKER, POSTGRES, 5432)

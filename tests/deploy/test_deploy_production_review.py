"""The production review's checks that need no cluster (issue 11): names Kubernetes turns into
variables vLLM reads, secrets off command lines, pinned revisions and images, probes, drains."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time

import pytest

from tests.deploy.deploy_helpers import (
    DEPLOY,
    ROOT,
    k8s_find,
    load_profile,
    parse_flags,
    runpod_vllm_env,
)

VLLM_ENVS = json.loads((ROOT / "serving" / "vllm-0.10.2-envs.json").read_text())
# Services of the Qdrant Helm release "qdrant" (qdrant-values.yaml) share the namespace.
HELM_SERVICES = [
    {"metadata": {"name": "qdrant"}, "spec": {"ports": [{"name": "http", "port": 6333}, {"name": "grpc", "port": 6334}]}},
    {"metadata": {"name": "qdrant-headless"}, "spec": {"clusterIP": "None", "ports": [{"port": 6333}]}},
]


def injected_variables(service: dict) -> set[str]:
    """What Kubernetes puts in every pod's environment for a Service (service links, docker-links
    style): upper case, `-` -> `_`. Headless Services inject nothing."""
    if service["spec"].get("clusterIP") == "None":
        return set()
    name = service["metadata"]["name"].upper().replace("-", "_")
    names = {f"{name}_SERVICE_HOST", f"{name}_SERVICE_PORT", f"{name}_PORT"}
    for port in service["spec"]["ports"]:
        if port.get("name"):
            names.add(f"{name}_SERVICE_PORT_{port['name'].upper().replace('-', '_')}")
        base = f"{name}_PORT_{port['port']}_{port.get('protocol', 'TCP')}"
        names |= {base, f"{base}_PROTO", f"{base}_PORT", f"{base}_ADDR"}
    return names


def collisions(service: dict) -> set[str]:
    """Injected names vLLM 0.10.2 reads (its source's list, and all of VLLM_*) or the gateway reads."""
    read = set(VLLM_ENVS["names"])
    return {v for v in injected_variables(service) if v in read or v.startswith(("VLLM_", "VISIONRAG_"))}


def services(k8s_objects) -> list[dict]:
    return [o for o in k8s_objects if o["kind"] == "Service"] + HELM_SERVICES


def pod_templates(k8s_objects) -> list[dict]:
    return [o for o in k8s_objects if o["kind"] in ("Deployment", "StatefulSet", "Job")]


# ---- 1. vLLM starts on Kubernetes ------------------------------------------------------------------
def test_the_env_snapshot_knows_vllm_port():
    assert VLLM_ENVS["vllm"] == "0.10.2" and "VLLM_PORT" in VLLM_ENVS["names"]


def test_no_service_name_injects_a_variable_vllm_or_the_gateway_reads(k8s_objects):
    for service in services(k8s_objects):
        assert not collisions(service), (service["metadata"]["name"], collisions(service))


def test_the_collision_check_has_teeth(k8s_objects):
    vllm = dict(k8s_find(k8s_objects, "Service", "model-server"), metadata={"name": "vllm"})
    assert "VLLM_PORT" in collisions(vllm)  # the service name that made vLLM 0.10.2 exit
    assert collisions({"metadata": {"name": "visionrag"}, "spec": {"ports": [{"port": 1}]}})


def test_pods_get_no_service_links(k8s_objects):
    for workload in pod_templates(k8s_objects):
        assert workload["spec"]["template"]["spec"]["enableServiceLinks"] is False, workload["metadata"]["name"]


# ---- 4. secrets out of command lines ---------------------------------------------------------------
SECRET_WORDS = ("api-key", "api_key", "hf-token", "VLLM_API_KEY", "HF_TOKEN")


def test_no_launcher_puts_a_secret_on_vllms_command_line(vllm_argvs):
    for launcher, argv in vllm_argvs.items():
        assert not [a for a in argv if any(word in a for word in SECRET_WORDS)], launcher
    assert "api-key" not in load_profile()["args"]
    assert load_profile()["env"]["VLLM_API_KEY"] == "${VLLM_API_KEY}"


def test_vllm_gets_its_key_from_a_secret_in_the_environment(compose, k8s_objects, runpod_pod):
    assert compose["services"]["vllm"]["environment"]["VLLM_API_KEY"].startswith("${VLLM_API_KEY:?")
    container = k8s_find(k8s_objects, "Deployment", "vllm")["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    assert env["VLLM_API_KEY"]["valueFrom"]["secretKeyRef"]["key"] == "VLLM_API_KEY"
    # RunPod: the pod's environment (a RunPod secret), which vLLM inherits from start.sh.
    assert runpod_pod["env"]["VLLM_API_KEY"] == "{{ RUNPOD_SECRET_vllm_api_key }}"


# ---- 5. pin what runs --------------------------------------------------------------------------------
def test_the_model_revision_is_one_pinned_commit_everywhere(compose, vllm_argvs):
    revision = load_profile()["args"]["revision"]
    assert re.fullmatch(r"[0-9a-f]{40}", revision), "a commit hash, not a branch or tag"
    for launcher, argv in vllm_argvs.items():
        assert parse_flags(argv)["revision"] == revision, launcher
    download = " ".join(compose["services"]["model-download"]["entrypoint"])
    assert f"revision='{revision}'" in download, "vLLM starts offline from exactly this snapshot"


def registry_of(ref: str) -> str | None:
    first, _, rest = ref.partition("/")
    return first if rest and ("." in first or ":" in first or first == "localhost") else None


def test_every_image_names_its_registry(compose, k8s_objects, kustomization, runpod_pod):
    refs = [s["image"] for s in compose["services"].values()]
    refs += [c["image"] for w in pod_templates(k8s_objects) for c in w["spec"]["template"]["spec"]["containers"]]
    refs += [i["name"] for i in kustomization["images"]]
    refs += [runpod_pod["image_name"], load_profile()["vllm"]["image"]]
    for dockerfile in ("runpod/Dockerfile", "gateway/Dockerfile"):
        lines = (DEPLOY / dockerfile).read_text().splitlines()
        refs += [line.split()[1] for line in lines if line.startswith("FROM ") and not line.startswith("FROM build")]
    unqualified = [r for r in refs if registry_of(r) is None]
    assert not unqualified, unqualified


def test_compose_builds_the_gateway_and_never_pulls_it(compose):
    gateway = compose["services"]["gateway"]
    assert gateway["pull_policy"] == "build" and "build" in gateway
    assert registry_of(gateway["image"]) == "localhost"


# ---- 6. peer access over PCIe ------------------------------------------------------------------------
def test_vllm_checks_peer_access_for_real(compose, k8s_objects):
    assert load_profile()["env"]["VLLM_SKIP_P2P_CHECK"] == "0"
    assert compose["services"]["vllm"]["environment"]["VLLM_SKIP_P2P_CHECK"] == "0"
    container = k8s_find(k8s_objects, "Deployment", "vllm")["spec"]["template"]["spec"]["containers"][0]
    assert {e["name"]: e.get("value") for e in container["env"]}["VLLM_SKIP_P2P_CHECK"] == "0"
    assert runpod_vllm_env()["VLLM_SKIP_P2P_CHECK"] == "0"


# ---- 7. probes and shutdown --------------------------------------------------------------------------
def test_drains_outlast_the_longest_stream(compose, k8s_objects):
    from gateway.settings import Settings

    read_timeout = Settings.model_fields["upstream_read_timeout_s"].default
    for kind, name in (("Deployment", "vllm"), ("StatefulSet", "gateway")):
        spec = k8s_find(k8s_objects, kind, name)["spec"]["template"]["spec"]
        (container,) = spec["containers"]
        sleep = container["lifecycle"]["preStop"]["exec"]["command"]
        assert sleep[0] == "sleep" and int(sleep[1]) >= 5, name
        assert spec["terminationGracePeriodSeconds"] >= int(sleep[1]) + 2 * read_timeout, name
    for name in ("vllm", "gateway"):
        assert re.fullmatch(r"(\d+)m", compose["services"][name]["stop_grace_period"]), name
        assert int(compose["services"][name]["stop_grace_period"][:-1]) * 60 >= 2 * read_timeout


def test_no_disruption_budget_blocks_a_node_drain(k8s_objects):
    budgets = [o for o in k8s_objects if o["kind"] == "PodDisruptionBudget"]
    assert budgets
    for budget in budgets:
        spec = budget["spec"]
        assert "minAvailable" not in spec and spec["maxUnavailable"] >= 1
        assert spec["unhealthyPodEvictionPolicy"] == "AlwaysAllow"
    # vLLM is a single replica: a budget for it could only block drains.
    assert not [b for b in budgets if b["spec"]["selector"]["matchLabels"].get("app.kubernetes.io/name") == "vllm"]


def test_gateway_readiness_is_its_own(k8s_objects):
    # /ready answers 200 while the gateway serves, whatever vLLM's state (tests/gateway/api/test_ready.py).
    container = k8s_find(k8s_objects, "StatefulSet", "gateway")["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"


# ---- 10. the RunPod start script ------------------------------------------------------------------------
def test_start_script_traps_signals_before_starting_anything():
    script = (DEPLOY / "runpod" / "start.sh").read_text()
    trap = script.index("trap stop_all TERM INT")
    assert trap < script.index("python3 -m vllm.entrypoints") and trap < script.index("uvicorn")


def test_start_script_stops_vllm_when_signalled_during_start_up(tmp_path):
    """The real start.sh, with `python3` a stand-in that sleeps (no vLLM, no GPU here): SIGTERM while
    it waits for vLLM's /health must stop the stand-in and end the script."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    marker = tmp_path / "python3.pid"
    stand_in = f"#!/bin/bash\n[[ $1 == *gpu_preflight.py ]] && exit 0\nif [[ $1 == -m ]]; then echo $$ > {marker}; exec sleep 300; fi\nexit 1\n"
    (bin_dir / "python3").write_text(stand_in)
    (bin_dir / "python3").chmod(0o755)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "HF_TOKEN": "t", "VLLM_API_KEY": "k", "VISIONRAG_API_KEYS": "a:b",
           "HF_HOME": str(tmp_path / "hf"), "VISIONRAG_DATA_DIR": str(tmp_path / "d"),
           "VISIONRAG_FASTEMBED_CACHE_DIR": str(tmp_path / "f")}
    process = subprocess.Popen(["bash", str(DEPLOY / "runpod" / "start.sh")], env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 20
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        vllm_pid = int(marker.read_text())
        process.terminate()
        assert process.wait(timeout=15) == 143
        with pytest.raises(ProcessLookupError):
            os.kill(vllm_pid, 0)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)


# ---- 10. ingress limits and TLS ------------------------------------------------------------------------
def test_the_ingress_template_validates_and_matches_the_gateways_limits(k8s_objects):
    from kubernetes_validate import utils as kv

    from gateway.settings import Settings
    from tests.deploy.deploy_helpers import K8S, load_yaml_docs

    (ingress,) = load_yaml_docs(K8S / "ingress.example.yaml")
    kv.validate(ingress, kv.latest_version(), strict=True)
    notes = ingress["metadata"]["annotations"]
    body = notes["nginx.ingress.kubernetes.io/proxy-body-size"]
    assert re.fullmatch(r"\d+m", body) and int(body[:-1]) * 2**20 >= Settings.model_fields["max_body_bytes"].default
    read_timeout = Settings.model_fields["upstream_read_timeout_s"].default
    for name in ("proxy-read-timeout", "proxy-send-timeout"):
        assert int(notes[f"nginx.ingress.kubernetes.io/{name}"]) > read_timeout, name
    assert notes["nginx.ingress.kubernetes.io/proxy-buffering"] == "off"
    assert ingress["spec"]["tls"] and notes["nginx.ingress.kubernetes.io/ssl-redirect"] == "true"
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    service = k8s_find(k8s_objects, "Service", backend["name"])
    assert backend["port"]["name"] in {p["name"] for p in service["spec"]["ports"]}


def test_qdrant_cloud_is_reached_over_tls():
    # The API key travels with every request: never over plain HTTP to a cloud endpoint.
    text = (DEPLOY / "qdrant-cloud.md").read_text()
    assert "https://xyz-example" in text and "http://xyz" not in text

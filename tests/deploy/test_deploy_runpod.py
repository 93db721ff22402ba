"""deploy/runpod/pod-template.json: what a RunPod pod is asked for."""

from __future__ import annotations

import re

from tests.deploy.deploy_helpers import (
    ROOT,
    assert_pinned,
    final_stage,
    gateway_settings_from,
    parse_flags,
    runpod_vllm_argv,
    runpod_vllm_env,
)

# Keyword arguments of runpod.create_pod in the `runpod` SDK (1.12.0, and the REST-v2 version after
# it): the README passes the template as `runpod.create_pod(**template)`, so an unknown key
# would be a TypeError on the user's machine.
CREATE_POD_KWARGS = {
    "name",
    "image_name",
    "gpu_type_id",
    "cloud_type",
    "support_public_ip",
    "start_ssh",
    "data_center_id",
    "country_code",
    "gpu_count",
    "volume_in_gb",
    "container_disk_in_gb",
    "min_vcpu_count",
    "min_memory_in_gb",
    "docker_args",
    "ports",
    "volume_mount_path",
    "env",
    "template_id",
    "network_volume_id",
    "allowed_cuda_versions",
    "min_download",
    "min_upload",
    "instance_id",
}


def test_template_is_create_pod_arguments(runpod_pod):
    assert set(runpod_pod) <= CREATE_POD_KWARGS, set(runpod_pod) - CREATE_POD_KWARGS


def test_asks_for_two_l40s_and_100_gb(runpod_pod):
    assert runpod_pod["gpu_type_id"] == "NVIDIA L40S"
    assert runpod_pod["gpu_count"] == 2
    assert runpod_pod["volume_in_gb"] == 100


def test_exposes_only_the_gateway_port(runpod_pod, runpod_dockerfile):
    # vLLM's --api-key guards only /v1: its port must not be published, even "for debugging".
    assert runpod_pod["ports"].split(",") == ["8080/http"]
    assert final_stage(runpod_dockerfile)["EXPOSE"] == ["8080"]
    assert "docker_args" not in runpod_pod and "support_public_ip" not in runpod_pod


def test_vllm_listens_on_loopback_and_the_gateway_on_the_published_port(runpod_pod):
    flags = parse_flags(runpod_vllm_argv())
    assert flags["host"] == "127.0.0.1" and flags["port"] == "8000"
    script = (ROOT / "deploy" / "runpod" / "start.sh").read_text()
    assert "--host 0.0.0.0 --port 8080" in script  # the gateway
    assert "VISIONRAG_UPSTREAM_URLS:-http://127.0.0.1:8000/v1" in script


def test_vllm_alone_gets_the_dead_proxy(runpod_pod, runpod_dockerfile):
    # The gateway fetches clients' image URLs itself: the proxy settings must reach vLLM only.
    env = runpod_vllm_env()
    assert env["HTTP_PROXY"] == env["https_proxy"] == "http://127.0.0.1:9"
    shared = " ".join(final_stage(runpod_dockerfile).get("ENV", [])) + " ".join(runpod_pod["env"])
    assert "proxy" not in shared.lower()


def test_image_is_pinned(runpod_pod):
    assert_pinned(runpod_pod["image_name"])


def test_persistent_paths_are_on_the_volume(runpod_pod):
    mount = runpod_pod["volume_mount_path"]
    env = runpod_pod["env"]
    for name in ("HF_HOME", "VISIONRAG_DATA_DIR", "VISIONRAG_FASTEMBED_CACHE_DIR"):
        assert env[name].startswith(mount + "/"), f"{name} would be lost when the pod restarts"


def test_secrets_are_runpod_secret_references(runpod_pod):
    env = runpod_pod["env"]
    for name in ("HF_TOKEN", "VLLM_API_KEY", "VISIONRAG_API_KEYS"):
        assert re.fullmatch(r"\{\{ RUNPOD_SECRET_\w+ \}\}", env[name]), f"{name} must not be a literal"


def test_start_script_requires_what_the_template_provides(runpod_pod):
    script = (ROOT / "deploy" / "runpod" / "start.sh").read_text()
    required = set(re.findall(r'^: "\$\{(\w+):\?', script, re.MULTILINE))
    assert required and required <= set(runpod_pod["env"]), required - set(runpod_pod["env"])


def test_gateway_environment_is_what_the_gateway_reads(runpod_pod):
    settings = gateway_settings_from(runpod_pod["env"])
    assert str(settings.data_dir) == runpod_pod["env"]["VISIONRAG_DATA_DIR"]
    assert settings.tenants_by_key

"""deploy/docker-compose.yml against the Compose Specification's JSON schema and the gateway's settings."""

from __future__ import annotations

import copy
import re

from tests.deploy.deploy_helpers import (
    assert_pinned,
    gateway_settings_from,
    pyproject,
    qdrant_client_version,
    split_image,
)


def test_compose_file_matches_the_compose_spec(compose, validator):
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(compose)]
    assert not errors, "\n".join(errors)


def test_the_schema_rejects_a_broken_file(compose, validator):
    # Proves the validation above has teeth: a misspelt key and a wrong type must both fail.
    broken = copy.deepcopy(compose)
    broken["services"]["gateway"]["helthcheck"] = broken["services"]["gateway"].pop("healthcheck")
    broken["services"]["qdrant"]["volumes"] = "qdrant-storage:/qdrant/storage"
    messages = " ".join(e.message for e in validator.iter_errors(broken))
    assert "helthcheck" in messages
    assert "is not of type 'array'" in messages


def test_every_image_is_pinned(compose):
    for name, service in compose["services"].items():
        assert "image" in service, f"{name}: no image (a build without a tag is untraceable)"
        assert_pinned(service["image"])


def test_gateway_image_tag_is_the_package_version(compose):
    _, tag, _ = split_image(compose["services"]["gateway"]["image"])
    assert tag == pyproject()["project"]["version"]


def test_qdrant_server_is_within_one_minor_of_the_client(compose):
    # qdrant-client warns (and may fail on new calls) when server and client minors differ by more than 1.
    _, tag, _ = split_image(compose["services"]["qdrant"]["image"])
    server = tuple(int(x) for x in re.fullmatch(r"v(\d+)\.(\d+)\.\d+", tag).groups())
    client = qdrant_client_version()
    assert server[0] == client[0] and abs(server[1] - client[1]) <= 1, (tag, client)


def test_vllm_gets_both_gpus_shm_and_a_model_cache(compose):
    vllm = compose["services"]["vllm"]
    devices = vllm["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 2, "capabilities": ["gpu"]}]
    # Tensor-parallel workers need shared memory: either a big /dev/shm or the host's IPC.
    assert vllm.get("ipc") == "host" or re.fullmatch(r"\d+gb?", str(vllm.get("shm_size", "")).lower())
    assert any(v.endswith(":/root/.cache/huggingface") for v in vllm["volumes"])
    assert vllm["environment"]["HF_TOKEN"].startswith("${HF_TOKEN:?")


def test_vllm_health_check_waits_for_the_download(compose):
    check = compose["services"]["vllm"]["healthcheck"]
    assert "/health" in " ".join(check["test"])
    minutes = int(re.fullmatch(r"(\d+)m", check["start_period"]).group(1))
    assert minutes >= 20, "the first start downloads ~21 GB"


def test_qdrant_has_storage_and_an_api_key(compose):
    qdrant = compose["services"]["qdrant"]
    assert any(v.endswith(":/qdrant/storage") for v in qdrant["volumes"])
    assert qdrant["environment"]["QDRANT__SERVICE__API_KEY"].startswith("${QDRANT_API_KEY:?")


def test_gateway_build_health_and_dependencies(compose):
    gateway = compose["services"]["gateway"]
    assert gateway["build"] == {"context": "..", "dockerfile": "deploy/gateway/Dockerfile"}
    assert "/health" in " ".join(gateway["healthcheck"]["test"])
    assert gateway["depends_on"]["vllm"]["condition"] == "service_healthy"
    assert "qdrant" in gateway["depends_on"]
    data_dir = gateway["environment"]["VISIONRAG_DATA_DIR"]
    assert any(v.split(":")[1] == data_dir for v in gateway["volumes"]), "the journal is not on a volume"


def test_named_volumes_are_declared(compose):
    used = {
        v.split(":")[0]
        for service in compose["services"].values()
        for v in service.get("volumes", [])
        if not v.startswith((".", "/"))
    }
    assert used == set(compose["volumes"])


def test_gateway_environment_is_what_the_gateway_reads(compose):
    # Settings ignores unknown variables, so a misspelt VISIONRAG_ name would be silently dropped.
    env = compose["services"]["gateway"]["environment"]
    settings = gateway_settings_from(env)
    assert settings.upstream_urls == ["http://vllm:8000/v1"]
    assert settings.qdrant_url == "http://qdrant:6333"
    assert settings.upstream_api_key is not None and settings.qdrant_api_key is not None
    assert settings.tenants_by_key, "no client keys: the gateway would be open"


def test_secrets_come_from_the_env_file(compose):
    """No literal secret in the file: every key is a required `${VAR:?}` reference."""
    secret_names = {
        "HF_TOKEN",
        "QDRANT__SERVICE__API_KEY",
        "VISIONRAG_API_KEYS",
        "VISIONRAG_UPSTREAM_API_KEY",
        "VISIONRAG_QDRANT_API_KEY",
    }
    for service in compose["services"].values():
        for name, value in service.get("environment", {}).items():
            if name in secret_names:
                assert re.fullmatch(r"\$\{\w+:\?[^}]*\}", value), f"{name} is not a required ${{VAR:?}}"
    # vLLM's key from the environment only: on the command line vLLM would log it at start-up.
    assert not [a for a in compose["services"]["vllm"]["command"] if "api-key" in a or "VLLM_API_KEY" in a]
    assert compose["services"]["vllm"]["environment"]["VLLM_API_KEY"] == "${VLLM_API_KEY:?set VLLM_API_KEY in deploy/.env}"


# ---- only the gateway is reachable (docs/serving.md, "Why vLLM must never be exposed directly") -----


def networks_of(service: dict) -> set[str]:
    # A list or a mapping of network names: set() takes the names from either.
    return set(service.get("networks", ["default"]))


def test_only_the_gateway_publishes_a_port(compose):
    published = {
        name: service["ports"] for name, service in compose["services"].items() if service.get("ports")
    }
    assert published == {"gateway": ["8080:8080"]}
    # `expose` publishes nothing but would advertise a port to other networks' readers: none either.
    assert all("expose" not in service for service in compose["services"].values())


def test_vllm_and_qdrant_sit_on_an_internal_network_only_the_gateway_joins(compose):
    services = compose["services"]
    (backend,) = networks_of(services["vllm"])
    assert compose["networks"][backend].get("internal") is True
    assert networks_of(services["qdrant"]) == {backend}
    joined = {name for name, service in services.items() if backend in networks_of(service)}
    assert joined == {"vllm", "qdrant", "gateway"}
    # The gateway also needs a network with a way out (CLIP download, image URLs) for its port.
    assert any(not compose["networks"][n].get("internal") for n in networks_of(services["gateway"]))
    for name in ("vllm", "qdrant"):
        assert "network_mode" not in services[name], f"{name}: network_mode would bypass the networks"


def test_vllm_starts_offline_from_the_one_shot_download(compose):
    services = compose["services"]
    download, vllm = services["model-download"], services["vllm"]
    assert vllm["depends_on"]["model-download"]["condition"] == "service_completed_successfully"
    assert download["image"] == vllm["image"] and download["restart"] == "no"
    # Same cache volume, and the job's network has a way out while vLLM's has none.
    cache = [v for v in vllm["volumes"] if v.endswith(":/root/.cache/huggingface")]
    assert cache and cache[0] in download["volumes"]
    assert not any(compose["networks"][n].get("internal") for n in networks_of(download))
    assert "snapshot_download('meta-llama/Llama-3.2-11B-Vision-Instruct'" in " ".join(download["entrypoint"])
    assert vllm["environment"]["HF_HUB_OFFLINE"] == "1"


def test_vllm_health_check_ignores_the_dead_proxy(compose):
    # The check runs with vLLM's environment; urlopen would send 127.0.0.1 to http_proxy too.
    vllm = compose["services"]["vllm"]
    assert vllm["environment"]["http_proxy"] == "http://127.0.0.1:9"
    assert "ProxyHandler({})" in " ".join(vllm["healthcheck"]["test"])
    assert not any("proxy" in name.lower() for name in compose["services"]["gateway"]["environment"])

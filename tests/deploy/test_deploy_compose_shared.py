"""deploy/docker-compose.shared.yml, layered over docker-compose.yml with -f: the Compose Specification's
schema, the services it adds, and the shared-state settings contract as the gateway's real Settings read
it. Compose's own merge is not available here (no Docker engine): layered_service applies its rules for
the keys read below."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import pytest

from gateway.settings import Settings
from tests.deploy.deploy_helpers import (
    DEPLOY,
    Reset,
    assert_pinned,
    gateway_settings_from,
    interpolate,
    layered_service,
    visionrag_command,
)
from tests.deploy.test_deploy_production_review import registry_of

NEW_SERVICES = {"postgres", "minio", "minio-init", "gateway-lb", "worker"}
# What deploy/.env holds, in the shape each takes (hex, as .env.example says to generate them).
SAMPLE_ENV = {
    name: "0123abcd" * 8
    for name in (
        "POSTGRES_PASSWORD",
        "MINIO_ROOT_PASSWORD",
        "S3_SECRET_ACCESS_KEY",
        "QDRANT_API_KEY",
        "VLLM_API_KEY",
        "HF_TOKEN",
    )
}
SAMPLE_ENV["VISIONRAG_API_KEYS"] = "acme:sample-key-1"


@pytest.fixture(scope="module")
def layered(compose, compose_shared) -> dict[str, dict]:
    """Every service as Compose runs it with both files."""
    names = set(compose["services"]) | set(compose_shared["services"])
    return {name: layered_service(compose, compose_shared, name) for name in names}


def environment(service: dict) -> dict[str, str]:
    return {name: interpolate(str(value), SAMPLE_ENV) for name, value in service["environment"].items()}


def networks_of(service: dict) -> set[str]:
    return set(service.get("networks", ["default"]))


def test_the_file_matches_the_compose_spec(compose_shared, validator):
    errors = [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(compose_shared)
    ]
    assert not errors, "\n".join(errors)
    assert "name" not in compose_shared, "the base file names the project; a second name would split it"


def test_it_adds_the_shared_services_and_reconfigures_the_gateway(compose, compose_shared):
    assert set(compose_shared["services"]) == NEW_SERVICES | {"gateway"}
    # The base file's services stay as they are: vLLM, Qdrant and the download are reused, not redefined.
    assert not NEW_SERVICES & set(compose["services"])


def test_every_image_is_pinned_and_names_its_registry(compose_shared):
    for name, service in compose_shared["services"].items():
        if name == "gateway":
            continue  # the base file's image, built here
        assert_pinned(service["image"])
        assert registry_of(service["image"]), service["image"]


def test_the_worker_is_the_gateways_image(layered):
    worker, gateway = layered["worker"], layered["gateway"]
    for key in ("build", "image", "pull_policy"):
        assert worker[key] == gateway[key], key
    name, params = visionrag_command(worker["command"])
    assert name == "worker" and params["metrics_host"] == "0.0.0.0"
    # The image's own check asks port 8080, where a worker does not listen.
    assert f"127.0.0.1:{params['metrics_port']}/metrics" in " ".join(worker["healthcheck"]["test"])


def test_gateways_and_workers_share_journal_bucket_and_qdrant(layered):
    postgres = layered["postgres"]["environment"]
    for name in ("gateway", "worker"):
        env = environment(layered[name])
        settings = gateway_settings_from(env)
        assert settings.shared_journal, name
        url = urlsplit(settings.database_url.get_secret_value())
        assert (url.scheme, url.hostname, url.port) == ("postgresql", "postgres", 5432), name
        assert (url.username, url.path.lstrip("/")) == (postgres["POSTGRES_USER"], postgres["POSTGRES_DB"]), (
            name
        )
        assert url.password == SAMPLE_ENV["POSTGRES_PASSWORD"], name
        assert settings.blob_url == "s3://visionrag/images", name
        assert env["AWS_ENDPOINT_URL"] == "http://minio:9000" and env["AWS_DEFAULT_REGION"], name
        # With a shared journal memory needs a Qdrant server (Edge is refused at start-up).
        assert settings.memory_enabled and settings.qdrant_url == "http://qdrant:6333", name
        assert settings.qdrant_api_key is not None, name
    gateway = gateway_settings_from(environment(layered["gateway"]))
    assert gateway.gateway_ingest is None and not gateway.ingest_here  # the workers ingest
    assert gateway.tenants_by_key and gateway.upstream_urls == ["http://vllm:8000/v1"]
    worker = gateway_settings_from(environment(layered["worker"]))
    assert worker.embed_threads == 1 and worker.clip_int8 is True


def test_the_bucket_and_its_user_are_what_the_gateway_uses(compose_shared, layered):
    script = compose_shared["services"]["minio-init"]["command"][0]
    env = environment(layered["gateway"])
    bucket = urlsplit(env["VISIONRAG_BLOB_URL"]).netloc
    assert f"mc mb --ignore-existing local/{bucket}\n" in script
    assert f'"arn:aws:s3:::{bucket}", "arn:aws:s3:::{bucket}/*"' in script
    user = env["AWS_ACCESS_KEY_ID"]
    assert f'mc admin user add local {user} "$$S3_SECRET_ACCESS_KEY"' in script
    assert f"mc admin policy attach local visionrag --user {user}" in script
    # Forgetting must really delete: no versioning, no object lock, ever.
    assert not re.search(r"version enable|--with-versioning|--with-lock|retention", script)
    init = compose_shared["services"]["minio-init"]
    assert init["restart"] == "no" and init["depends_on"]["minio"]["condition"] == "service_healthy"
    # The image's root never reaches the gateway.
    assert env["AWS_ACCESS_KEY_ID"] != compose_shared["services"]["minio"]["environment"]["MINIO_ROOT_USER"]


def test_the_gateway_keeps_nothing_and_publishes_nothing(compose_shared, layered):
    gateway = layered["gateway"]
    assert isinstance(compose_shared["services"]["gateway"]["ports"], Reset)
    assert gateway["ports"] == []
    assert gateway["deploy"]["replicas"] >= 2
    data_dir = gateway["environment"]["VISIONRAG_DATA_DIR"]
    (data,) = [
        v for v in gateway["volumes"] if (v["target"] if isinstance(v, dict) else v.split(":")[1]) == data_dir
    ]
    assert data == {"type": "tmpfs", "target": data_dir}, "the journal volume is still mounted"
    for name in ("postgres", "minio-init"):
        assert gateway["depends_on"][name]["condition"] in (
            "service_healthy",
            "service_completed_successfully",
        )


def test_only_the_balancer_publishes_a_port(layered):
    published = {name: service["ports"] for name, service in layered.items() if service.get("ports")}
    assert published == {"gateway-lb": ["8080:8080"]}


def test_the_balancer_finds_every_replica_and_keeps_the_gateways_limits(compose_shared, layered):
    lb = compose_shared["services"]["gateway-lb"]
    (mount,) = lb["configs"]
    caddyfile = compose_shared["configs"][mount["source"]]["content"]
    assert mount["target"] == "/etc/caddy/Caddyfile"
    # Re-resolved by name, so `--scale gateway=N` needs no change here.
    assert re.search(r"dynamic a gateway 8080\b", caddyfile)
    assert networks_of(lb) & networks_of(layered["gateway"])
    size = re.search(r"max_size (\d+)MiB", caddyfile)
    assert size and int(size.group(1)) * 2**20 >= Settings.model_fields["max_body_bytes"].default
    assert "flush_interval -1" in caddyfile
    # Caddy sets no proxy read timeout by default; one shorter than the gateway's would cut answers.
    assert not re.search(r"(read|write)_timeout|response_header_timeout", caddyfile)


def test_the_stores_sit_on_the_internal_network(compose, layered):
    for name in ("postgres", "minio", "minio-init"):
        (network,) = networks_of(layered[name])
        assert compose["networks"][network].get("internal") is True, name
        assert not layered[name].get("ports"), name
    # The worker also needs a way out for the model download, and nothing published.
    assert any(not compose["networks"][n].get("internal") for n in networks_of(layered["worker"]))


def test_health_checks_and_start_order(layered):
    assert "pg_isready" in layered["postgres"]["healthcheck"]["test"]
    assert layered["minio"]["healthcheck"]["test"] == ["CMD", "mc", "ready", "local"]
    worker = layered["worker"]["depends_on"]
    assert worker["postgres"]["condition"] == "service_healthy"
    assert worker["minio-init"]["condition"] == "service_completed_successfully"
    assert "qdrant" in worker
    assert layered["worker"]["deploy"]["replicas"] >= 2


def test_secrets_come_from_the_env_file(compose_shared):
    required = {
        "POSTGRES_PASSWORD",
        "MINIO_ROOT_PASSWORD",
        "S3_SECRET_ACCESS_KEY",
        "AWS_SECRET_ACCESS_KEY",
        "VISIONRAG_QDRANT_API_KEY",
    }
    for name, service in compose_shared["services"].items():
        for key, value in service.get("environment", {}).items():
            if key in required:
                assert re.fullmatch(r"\$\{\w+:\?[^}]*\}", value), (name, key)
    url = compose_shared["services"]["gateway"]["environment"]["VISIONRAG_DATABASE_URL"]
    assert "${POSTGRES_PASSWORD:?" in url
    # .env.example names each one, so `cp .env.example .env` shows what to fill in.
    example = (DEPLOY / ".env.example").read_text()
    for name in ("POSTGRES_PASSWORD", "MINIO_ROOT_PASSWORD", "S3_SECRET_ACCESS_KEY"):
        assert re.search(rf"^{name}=$", example, re.MULTILINE), name


def test_named_volumes_are_declared(compose, compose_shared):
    used = {
        v.split(":")[0]
        for service in compose_shared["services"].values()
        for v in service.get("volumes", [])
        if isinstance(v, str)
    }
    assert used <= set(compose_shared["volumes"]) | set(compose["volumes"])
    assert {"postgres-data", "minio-data"} <= set(compose_shared["volumes"])

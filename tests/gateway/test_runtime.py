"""The composition root's refusals: settings several replicas cannot run on stop the start with a message
that says what to set, before anything is opened."""

from __future__ import annotations

import pytest

from gateway.runtime import SharedStateError, check_shared_state
from gateway.settings import Settings
from tests.plugins.gateway_server import GatewayProcess, free_port

SHARED = {"database_url": "postgresql://visionrag:s3cret@db.invalid:5432/visionrag"}


def settings(**values: object) -> Settings:
    return Settings(_env_file=None, **values)


def test_a_shared_journal_with_an_embedded_vector_store_is_refused() -> None:
    with pytest.raises(SharedStateError, match="VISIONRAG_QDRANT_URL.*VISIONRAG_MEMORY_ENABLED=false"):
        check_shared_state(settings(**SHARED))


@pytest.mark.parametrize("values", [
    {},  # the embedded default: one process, its own everything
    {**SHARED, "memory_enabled": False},
    {**SHARED, "qdrant_url": "http://qdrant.invalid:6333"},
])
def test_what_replicas_can_share_is_accepted(values: dict) -> None:
    check_shared_state(settings(**values))


def test_a_gateway_started_so_exits_with_the_message(tmp_path) -> None:
    gateway = GatewayProcess(free_port(), tmp_path, {
        "VISIONRAG_UPSTREAM_URLS": "http://127.0.0.1:9/v1", "VISIONRAG_DATA_DIR": str(tmp_path),
        "VISIONRAG_DATABASE_URL": SHARED["database_url"], "VISIONRAG_MEMORY_ENABLED": "true"},
        tmp_path / "gateway.log")
    with pytest.raises(RuntimeError, match="exited"):
        gateway.start(timeout_s=60)
    assert "Set VISIONRAG_QDRANT_URL to a Qdrant server" in gateway.log_tail(80)
    assert "s3cret" not in gateway.log_tail(80)

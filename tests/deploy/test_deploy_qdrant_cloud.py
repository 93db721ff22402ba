"""The request bodies in deploy/qdrant-cloud.md against qdrant-client's models and the gateway's schema."""

from __future__ import annotations

import json
import re

import pytest
from qdrant_client.http import models

from tests.deploy.deploy_helpers import DEPLOY


@pytest.fixture(scope="module")
def json_blocks() -> list[dict]:
    text = (DEPLOY / "qdrant-cloud.md").read_text()
    return [json.loads(block) for block in re.findall(r"```json\n(.*?)```", text, re.DOTALL)]


def test_collection_body_is_a_valid_create_collection(json_blocks):
    from gateway.memory.store.schema import SCHEMA

    (body,) = [b for b in json_blocks if "vectors" in b]
    # The same model qdrant-client serializes for PUT /collections/{name}: unknown keys or wrong
    # types would be a 400 from the server.
    request = models.CreateCollection.model_validate(body)
    assert set(request.vectors) == {s.name for s in SCHEMA if s.kind != "sparse"}
    assert set(request.sparse_vectors) == {s.name for s in SCHEMA if s.kind == "sparse"}
    sizes = {s.name: s.size for s in SCHEMA}
    for name, params in request.vectors.items():
        assert params.size == sizes[name]
        assert params.distance == models.Distance.COSINE
        assert params.on_disk is True  # float32 originals on disk
    scalar = request.quantization_config.scalar
    assert scalar.type == models.ScalarType.INT8
    assert scalar.always_ram is True  # quantized copies in RAM
    assert request.hnsw_config.on_disk is False
    assert request.on_disk_payload is True


def test_payload_index_bodies_are_the_ones_the_gateway_creates(json_blocks):
    from gateway.memory.store.base import TENANT_FIELD
    from gateway.memory.store.remote import payload_indexes

    bodies = [models.CreateFieldIndex.model_validate(b) for b in json_blocks if "field_name" in b]
    documented = {b.field_name: b.field_schema for b in bodies}
    assert documented == dict(payload_indexes())  # the same fields, each with the same schema
    assert documented[TENANT_FIELD].is_tenant is True


def test_distributed_collection_in_the_guide_is_valid():
    text = (DEPLOY / "README.md").read_text()
    (block,) = re.findall(r"```json\n(.*?)```", text, re.DOTALL)
    request = models.CreateCollection.model_validate(json.loads(block))
    # Every shard on two nodes, acknowledged by one: survives a node, keeps accepting writes.
    assert request.replication_factor == 2
    assert request.write_consistency_factor == 1
    assert request.shard_number % 3 == 0  # spread evenly over the 3 nodes the guide describes

"""Both store adapters (embedded qdrant-edge, qdrant-client local mode) against the same expectations."""

from __future__ import annotations

import json
import re
import sys
from dataclasses import fields
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from gateway.memory.points import point_id
from gateway.memory.store import pages
from gateway.memory.store.base import (
    RRF_K,
    Probe,
    SchemaMismatch,
    SearchFilter,
    StoreLocked,
    StoreUnavailable,
    VectorStore,
    probes_for,
)
from gateway.memory.store.edge import EdgeStore
from gateway.memory.store.points import Hit, PointPayload, StorePoint, rfc3339
from gateway.memory.store.remote import RemoteStore
from gateway.memory.store.schema import BY_NAME, MINILM_DIM, Sparse
from tests.plugins.gateway_server import free_port

RNG = np.random.default_rng(7)


def unit(seed: int) -> list[float]:
    v = np.random.default_rng(seed).standard_normal(512).astype(np.float32)
    return (v / np.linalg.norm(v)).tolist()


def point(n: int, *, tenant: str = "t1", model: str = "m1", user: str | None = None, ts: float = 1.7e9,
          names: tuple[str, ...] = ("image", "question", "answer"), sha: str | None = None) -> StorePoint:
    payload = {"exchange_id": f"ex{n}", "tenant": tenant, "model": model, "user": user, "ts": ts,
               "time": rfc3339(ts), "question": f"q{n}", "answer": f"a{n}", "image_sha256": sha,
               "image_mime": "image/png" if sha else None}
    # Each named vector of point n is distinct: seed = n*10 + slot.
    vectors = {name: unit(n * 10 + slot) for slot, name in enumerate(("image", "question", "answer")) if name in names}
    return StorePoint(point_id(f"ex{n}", 0), vectors, payload)


def test_nearest_on_each_named_vector(store: VectorStore) -> None:
    store.upsert([point(n) for n in range(20)])
    for slot, target in enumerate(("image", "question", "answer")):
        hits = store.query(probes_for(unit(5 * 10 + slot), target), SearchFilter("t1"), 3)
        assert hits[0].exchange_id == "ex5"
        assert hits[0].score == pytest.approx(1.0, abs=1e-4)
        assert len(hits) == 3


def test_fused_query_ranks_the_exchange_matching_every_vector_first(store: VectorStore) -> None:
    query = unit(999)
    everywhere = point(90)
    everywhere.vectors = {"image": query, "question": query, "answer": query}
    image_only = point(91)
    image_only.vectors["image"] = query  # ties on the image ranking, loses on the other two
    store.upsert([point(n) for n in range(20)] + [image_only, everywhere])
    hits = store.query(probes_for(query, "all"), SearchFilter("t1"), 5)
    assert hits[0].exchange_id == "ex90"
    assert len({h.id for h in hits}) == len(hits) == 5
    # RRF scores are rank-based: strictly decreasing down the list here.
    assert hits[0].score > hits[1].score


def test_probes_of_different_vectors_fuse_into_one_ranking(store: VectorStore) -> None:
    # Retrieval for a chat asks with two query vectors at once: the image's and the question's.
    image_query, text_query = unit(777), unit(778)
    both = point(80)
    both.vectors.update(image=image_query, question=text_query)
    image_only = point(81)
    image_only.vectors["image"] = image_query  # ties with ex80 on the image, random on the question
    store.upsert([point(n) for n in range(20)] + [image_only, both])
    hits = store.query([Probe(image_query, "image"), Probe(text_query, "question")], SearchFilter("t1"), 3)
    assert hits[0].exchange_id == "ex80"
    assert hits[0].score > hits[1].score


def at_cosine(query: np.ndarray, cosine: float, seed: int) -> list[float]:
    """A unit vector whose cosine with the unit `query` is exactly `cosine`."""
    other = np.random.default_rng(seed).standard_normal(query.shape[0])
    other -= (other @ query) * query
    other /= np.linalg.norm(other)
    return (cosine * query + np.sqrt(1 - cosine**2) * other).tolist()


def test_fusion_weights_bm25_above_the_sentence_model(store: VectorStore) -> None:
    """Weighted RRF, k = 2, BM25 weighted 2 (gateway.memory.store.schema): rank r scores 2 / (r + 2) on BM25,
    1 / (r + 1) on the sentence model. Expected orders computed by hand from those."""
    assert (RRF_K, BY_NAME["terms"].fusion_weight, BY_NAME["text"].fusion_weight) == (2, 2.0, 1.0)
    q1, q2 = (v / np.linalg.norm(v) for v in np.random.default_rng(3).standard_normal((2, MINILM_DIM)))
    # BM25 on term 7: A, C, B. Sentence model on q1: B, C, A. Sentence model on q2: A first, B fifth.
    # BM25 on term 8: B, A (only they have it).
    cosines = {"A": (0.8, 1.0), "B": (1.0, 0.6), "C": (0.9, 0.9), "D": (0.7, 0.8), "E": (0.6, 0.7)}
    terms = {"A": {7: 5.0, 8: 4.0}, "B": {7: 3.0, 8: 5.0}, "C": {7: 4.0}, "D": {9: 1.0}, "E": {9: 1.0}}
    points = []
    for n, name in enumerate("ABCDE"):
        p = point(n, names=())
        p.payload["exchange_id"] = name
        p.vectors = {"text": [at_cosine(q1, cosines[name][0], 10 + n), at_cosine(q2, cosines[name][1], 20 + n)],
                     "terms": Sparse(tuple(terms[name]), tuple(terms[name].values()))}
        points.append(p)
    store.upsert(points)

    def order(query: np.ndarray, term: int) -> list[str]:
        probes = [Probe(query.tolist(), "text"), Probe(Sparse((term,), (1.0,)), "terms")]
        return [h.exchange_id for h in store.query(probes, SearchFilter("t1"), 3)]

    # A: BM25 1st, sentence 3rd = 2/3 + 1/4; B: BM25 3rd, sentence 1st = 2/5 + 1/2; C: 1/2 + 1/3.
    # (Plain RRF ties A and B; k = 60 with these weights puts B first.)
    assert order(q1, 7) == ["A", "B", "C"]
    # The weight does not override the sentence model: A, sentence 1st and BM25 2nd = 1/2 + 1/2, beats B,
    # BM25 1st and sentence 5th = 2/3 + 1/6.
    assert order(q2, 8)[:2] == ["A", "B"]


def test_min_score_keeps_only_close_points_in_each_probe(store: VectorStore) -> None:
    store.upsert([point(n) for n in range(20)])
    exact = store.query([Probe(unit(50), "image", min_score=0.99)], SearchFilter("t1"), 5)
    assert [h.exchange_id for h in exact] == ["ex5"]
    fused = store.query([Probe(unit(50), "image", min_score=0.99), Probe(unit(71), "question", min_score=0.99)],
                        SearchFilter("t1"), 5)
    assert {h.exchange_id for h in fused} == {"ex5", "ex7"}
    assert store.query([Probe(unit(999), "image", min_score=0.99)], SearchFilter("t1"), 5) == []


def test_excluded_exchanges_never_come_back(store: VectorStore) -> None:
    store.upsert([point(n) for n in range(5)])
    flt = SearchFilter("t1", exclude_exchanges=("ex2", "ex3"))
    for probes in (probes_for(unit(20), "image"), probes_for(unit(20), "all")):
        found = {h.exchange_id for h in store.query(probes, flt, 10)}
        assert found == {"ex0", "ex1", "ex4"}


def test_points_with_a_subset_of_vectors(store: VectorStore) -> None:
    store.upsert([point(1, names=("question", "answer")), point(2, names=("image",))])
    image_hits = store.query(probes_for(unit(10), "image"), SearchFilter("t1"), 5)
    assert [h.exchange_id for h in image_hits] == ["ex2"]  # ex1 has no image vector
    answer_hits = store.query(probes_for(unit(12), "answer"), SearchFilter("t1"), 5)
    assert [h.exchange_id for h in answer_hits] == ["ex1"]


def test_tenant_scoping(store: VectorStore) -> None:
    store.upsert([point(1, tenant="a"), point(2, tenant="b")])
    assert [h.exchange_id for h in store.query(probes_for(unit(20), "image"), SearchFilter("a"), 5)] == ["ex1"]
    assert store.query(probes_for(unit(10), "image"), SearchFilter("nobody"), 5) == []
    assert store.count("a") == 1 and store.count() == 2


def test_filters_time_model_user(store: VectorStore) -> None:
    day = 86_400.0
    t0 = datetime(2026, 1, 1, tzinfo=UTC).timestamp()
    store.upsert([
        point(1, ts=t0, model="m1", user="alice"),
        point(2, ts=t0 + day, model="m2", user="bob"),
        point(3, ts=t0 + 2 * day, model="m1", user=None),
    ])

    def ids(flt: SearchFilter) -> set[str]:
        return {h.exchange_id for h in store.query(probes_for(unit(10), "image"), flt, 10)}

    assert ids(SearchFilter("t1")) == {"ex1", "ex2", "ex3"}
    assert ids(SearchFilter("t1", time_from=datetime.fromtimestamp(t0 + day / 2, UTC))) == {"ex2", "ex3"}
    assert ids(SearchFilter("t1", time_to=datetime.fromtimestamp(t0 + day, UTC))) == {"ex1", "ex2"}
    assert ids(SearchFilter("t1", models=("m1",))) == {"ex1", "ex3"}
    assert ids(SearchFilter("t1", models=("m1", "m2"))) == {"ex1", "ex2", "ex3"}
    assert ids(SearchFilter("t1", user="bob")) == {"ex2"}
    assert ids(SearchFilter("t1", models=("m1",), user="alice")) == {"ex1"}


def test_upsert_is_idempotent_on_point_ids(store: VectorStore) -> None:
    store.upsert([point(n) for n in range(5)])
    store.upsert([point(n) for n in range(5)])
    assert store.count() == 5


def test_an_image_s_stored_vector_is_found_by_its_sha256_in_its_tenant_only(store: VectorStore) -> None:
    sha = "ab" * 32
    store.upsert([point(1, tenant="a", sha=sha), point(2, tenant="a", names=("question", "answer"), sha="ef" * 32)])
    np.testing.assert_allclose(store.image_vector("a", sha), unit(10), atol=1e-6)  # the float original
    assert store.image_vector("b", sha) is None  # another tenant's image is not looked at
    assert store.image_vector("a", "cd" * 32) is None
    assert store.image_vector("a", "ef" * 32) is None  # a point of that image without an image vector


def test_a_hit_is_its_point_s_payload_decoded_without_the_keys_of_earlier_versions(store: VectorStore) -> None:
    written = PointPayload(exchange_id="ex1", tenant="t1", time=1.7e9 + 0.25, model="m1", user="alice",
                           endpoint="chat.completions", status="incomplete", image_count=2, image_index=1,
                           image_sha256="ab" * 32, image_mime="image/png")
    # As an earlier version wrote it: the texts and the client's image URL in the payload.
    old_keys = {"question": "q", "answer": "a", "image_url": "https://example.com/a.png"}
    store.upsert([StorePoint(point_id("ex1", 1), {"image": unit(10)}, {**written.encode(), **old_keys})])
    (hit,) = store.query(probes_for(unit(10), "image"), SearchFilter("t1"), 1)
    assert hit == Hit(id=point_id("ex1", 1), score=hit.score, **{f.name: getattr(written, f.name) for f in fields(written)})
    assert type(hit) is Hit and hit.score == pytest.approx(1.0, abs=1e-4)


def test_stats(store: VectorStore) -> None:
    store.upsert([point(n) for n in range(3)])
    stats = store.stats()
    assert stats.points == 3 and stats.backend in ("edge", "qdrant-client")


def test_edge_persists_across_reopen_and_indexes_on_optimize(tmp_path: Path) -> None:
    first = EdgeStore(tmp_path / "shard")
    first.ensure_schema()
    first.upsert([point(n) for n in range(50)])
    first.close()
    reopened = EdgeStore(tmp_path / "shard")
    reopened.ensure_schema()  # idempotent on an existing shard
    assert reopened.count() == 50
    reopened.optimize()
    assert reopened.query(probes_for(unit(30), "image"), SearchFilter("t1"), 1)[0].exchange_id == "ex3"
    reopened.close()


def test_edge_second_open_fails_clearly(tmp_path: Path) -> None:
    holder = EdgeStore(tmp_path / "shard")
    holder.ensure_schema()
    try:
        with pytest.raises(StoreLocked, match="open in another process"):
            EdgeStore(tmp_path / "shard").ensure_schema()
    finally:
        holder.close()


def test_remote_store_where_nothing_listens_is_unavailable() -> None:
    # A real qdrant-client pointed at a closed port: how a down server or network looks.
    down = RemoteStore("c", url=f"http://127.0.0.1:{free_port()}", timeout_s=2)
    with pytest.raises(StoreUnavailable, match="unreachable"):
        down.upsert([point(1)])
    with pytest.raises(StoreUnavailable):
        down.query(probes_for(unit(1), "image"), SearchFilter("t1"), 1)


def test_edge_optimize_runs_in_a_child_without_freezing_this_process(tmp_path: Path) -> None:
    """Edge's optimize() holds the GIL for its whole run; EdgeStore runs it in a child process instead."""
    import threading
    import time

    store = EdgeStore(tmp_path / "shard")
    store.ensure_schema()
    # Past Qdrant's indexing threshold (~10 MB of vectors), so there is an HNSW index to build.
    rng = np.random.default_rng(3)
    vectors = rng.standard_normal((6000, 512)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    store.upsert([
        StorePoint(point_id(f"ex{n}", 0), {"image": vectors[n].tolist()},
                   {"exchange_id": f"ex{n}", "tenant": "t1", "ts": 0.0, "time": rfc3339(0)})
        for n in range(6000)
    ])
    assert store.stats().indexed_vectors == 0

    ticks = 0
    refused = []
    done = threading.Event()

    def heartbeat() -> None:  # a pure-Python thread: it only runs if nobody holds the GIL
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            if not refused:
                try:
                    store.count()
                except StoreUnavailable:
                    refused.append(True)
            time.sleep(0.001)

    beat = threading.Thread(target=heartbeat)
    beat.start()
    started = time.monotonic()
    try:
        store.optimize()
    finally:
        done.set()
        beat.join()
    elapsed = time.monotonic() - started
    assert ticks > elapsed * 200  # ~1000/s when free; the GIL was never held for long
    assert refused  # while the child held the shard, operations failed fast instead of blocking
    assert store.stats().indexed_vectors > 0
    assert store.query(probes_for(vectors[42].tolist(), "image"), SearchFilter("t1"), 1)[0].exchange_id == "ex42"
    # The indexed segment scores int8 copies (rescored from the float originals): each point is still
    # its own nearest neighbour.
    sample = rng.choice(6000, 50, replace=False)
    found = [store.query(probes_for(vectors[n].tolist(), "image"), SearchFilter("t1"), 1)[0].exchange_id for n in sample]
    assert found == [f"ex{n}" for n in sample]
    store.close()


def _exchange_like(n: int, rng: np.random.Generator) -> StorePoint:
    """A point shaped like a stored exchange: three 512-d vectors and ~1 KB of payload."""
    vectors = rng.standard_normal((3, 512)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    payload = {"exchange_id": f"ex{n}", "tenant": "t1", "ts": 1.7e9 + n, "time": rfc3339(1.7e9 + n),
               "question": "what is in this picture? " * 12, "answer": "a picture of something " * 30}
    return StorePoint(point_id(f"ex{n}", 0), dict(zip(("image", "question", "answer"), vectors.tolist(), strict=True)),
                      payload)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="paging mapped files out is Linux's madvise")
def test_edge_hands_the_pages_of_written_points_back(tmp_path: Path) -> None:
    """Written vectors, payload and WAL are mapped files: without a hand-back every stored exchange
    stays in this process's RSS (~7 KB each). Data must stay intact when the pages go."""
    store = EdgeStore(tmp_path / "shard")
    store.ensure_schema()
    rng = np.random.default_rng(5)
    points = [_exchange_like(n, rng) for n in range(3000)]
    for start in range(0, len(points), 64):
        store.upsert(points[start:start + 64])
    vectors_written = 3000 * 3 * 512 * 4
    # Only the points since the last hand-back (fewer than 512) are still resident.
    assert pages.resident_bytes(tmp_path / "shard") < vectors_written / 2
    assert store.release_memory() > 0
    assert pages.resident_bytes(tmp_path / "shard") < 2 * 1024 * 1024
    assert store.count() == 3000
    for n in (0, 1500, 2999):
        hit = store.query(probes_for(points[n].vectors["answer"], "answer"), SearchFilter("t1"), 1)[0]
        assert hit.exchange_id == f"ex{n}" and hit.score == pytest.approx(1.0, abs=1e-4)
        assert hit.time == points[n].payload["ts"]
    store.close()


def test_edge_opens_a_shard_made_with_the_old_layout(tmp_path: Path) -> None:
    """Shards written before the on-disk layout (float vectors in RAM, Qdrant's defaults) still open,
    keep their points, and take the new layout for the segments written from then on."""
    import qdrant_edge as qe

    path = tmp_path / "shard"
    config = EdgeStore._config()
    old = qe.EdgeShard.create(str(path), qe.EdgeConfig(
        vectors={name: qe.EdgeVectorParams(size=p.size, distance=qe.Distance.Cosine,
                                           multivector_config=p.multivector_config)
                 for name, p in config.vectors.items()},
        sparse_vectors={name: qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf) for name in config.sparse_vectors}))
    old.update(qe.UpdateOperation.upsert_points([qe.Point(p.id, p.vectors, p.payload) for p in (point(n) for n in range(30))]))  # type: ignore[arg-type]
    old.close()

    store = EdgeStore(path)
    store.ensure_schema()
    assert store.count() == 30
    store.upsert([point(n) for n in range(30, 40)])
    assert store.query(probes_for(unit(7 * 10 + 1), "question"), SearchFilter("t1"), 1)[0].exchange_id == "ex7"
    assert store.query(probes_for(unit(35 * 10), "image"), SearchFilter("t1"), 1)[0].exchange_id == "ex35"
    store.close()
    written = json.loads((path / "edge_config.json").read_text())
    assert {v["memory"] for v in written["vectors"].values()} == {"cold"}
    assert written["quantization_config"]["scalar"]["type"] == "int8"
    reopened = EdgeStore(path)
    assert reopened.count() == 40
    reopened.close()


def test_a_store_made_with_other_vectors_asks_for_a_reindex(tmp_path: Path) -> None:
    """A store from before the hybrid schema (CLIP's three vectors only) is refused with the way out."""
    import qdrant_edge as qe
    from qdrant_client import QdrantClient, models

    path = tmp_path / "shard"
    qe.EdgeShard.create(str(path), qe.EdgeConfig(vectors={
        name: qe.EdgeVectorParams(size=512, distance=qe.Distance.Cosine) for name in ("image", "question", "answer")
    })).close()
    with pytest.raises(SchemaMismatch, match="visionrag reindex"):
        EdgeStore(path).ensure_schema()

    client = QdrantClient(path=str(tmp_path / "local"))
    client.create_collection("old", vectors_config={
        name: models.VectorParams(size=512, distance=models.Distance.COSINE) for name in ("image", "question", "answer")})
    client.close()
    remote = RemoteStore("old", path=str(tmp_path / "local"))
    with pytest.raises(SchemaMismatch, match="visionrag reindex"):
        remote.ensure_schema()
    remote.close()


def test_edge_indexes_only_the_fields_queries_filter_on(tmp_path: Path) -> None:
    """A shard from a version that also indexed `exchange_id` (no query filters on it; its index cost
    RAM per point) loses that index when opened; the fields filters use keep theirs, and /images'
    lookup by tenant and image hash still answers."""
    import qdrant_edge as qe

    path = tmp_path / "shard"
    old = qe.EdgeShard.create(str(path), EdgeStore._config())
    old.update(qe.UpdateOperation.create_field_index("exchange_id", qe.KeywordIndexParams()))  # type: ignore[arg-type]
    old.update(qe.UpdateOperation.upsert_points([qe.Point(p.id, p.vectors, p.payload)  # type: ignore[arg-type]
                                                 for p in (point(n, sha=f"{n:064x}") for n in range(5))]))
    old.close()

    store = EdgeStore(path)
    store.ensure_schema()
    store.ensure_schema()  # idempotent
    with store._use() as shard:
        indexed = set(shard.info().payload_schema)
    assert indexed == {"tenant", "time", "model", "user", "image_sha256"}
    np.testing.assert_allclose(store.image_vector("t1", f"{3:064x}"), unit(30), atol=1e-6)
    assert store.image_vector("t2", f"{3:064x}") is None
    store.close()


def test_remote_collection_layout_is_the_documented_one() -> None:
    """New server collections get deploy/qdrant-cloud.md's quantized layout; the request is validated
    by qdrant-client's own REST model of a collection creation."""
    from qdrant_client import models

    from gateway.memory.store.remote import collection_layout

    doc = (Path(__file__).resolve().parents[4] / "deploy" / "qdrant-cloud.md").read_text()
    documented = json.loads(re.search(r"```json\n(\{\n  \"vectors\".*?)```", doc, re.DOTALL).group(1))  # type: ignore[union-attr]
    layout = collection_layout()
    request = models.CreateCollection(
        vectors=layout["vectors_config"], sparse_vectors=layout["sparse_vectors_config"],
        quantization_config=layout["quantization_config"],
        hnsw_config=layout["hnsw_config"], on_disk_payload=layout["on_disk_payload"],
        optimizers_config=layout["optimizers_config"], wal_config=layout["wal_config"],
    ).model_dump(mode="json", exclude_none=True)
    assert request["vectors"] == documented["vectors"]
    assert request["sparse_vectors"] == documented["sparse_vectors"]
    assert request["quantization_config"] == documented["quantization_config"]
    assert request["on_disk_payload"] is documented["on_disk_payload"] is True
    assert request["hnsw_config"]["on_disk"] is documented["hnsw_config"]["on_disk"] is False
    # What lets a server forget (the document's "What Qdrant keeps after a deletion").
    assert request["optimizers_config"] == documented["optimizers_config"]
    assert request["wal_config"] == documented["wal_config"]


def test_purge_deleted_after_a_deletion_only(store: VectorStore) -> None:
    """The embedded store purges what deletions left (issue 16 §2; the byte scans are in
    tests/gateway/memory/test_forget_purge.py); a server does it by itself, so its adapter never has one pending."""
    store.upsert([point(n) for n in range(5)])
    assert store.purge_pending_since() is None and store.purge_deleted() is False
    store.delete_exchanges("t1", ["ex1"])
    if isinstance(store, EdgeStore):
        assert store.purge_pending_since() is not None
        assert store.purge_deleted() is True
    assert store.purge_pending_since() is None and store.purge_deleted() is False
    assert store.count() == 4
    assert store.query(probes_for(unit(30), "image"), SearchFilter("t1"), 1)[0].exchange_id == "ex3"


def test_edge_wal_segments_are_small_and_an_older_shard_gets_them_with_a_purge(tmp_path: Path) -> None:
    """The purge rotates the WAL with records of a segment's size (edge._forget_wal_history): a new
    shard's WAL segments are 1 MiB, not Qdrant's 32 MiB. A shard made by an earlier version (no WAL
    options in its config) gets them, and a purge for the deletions it may hold from before."""
    new = EdgeStore(tmp_path / "new")
    new.ensure_schema()
    new.upsert([point(n) for n in range(3)])
    assert json.loads((tmp_path / "new" / "edge_config.json").read_text())["wal_options"]["segment_capacity"] == 1 << 20
    assert max(f.stat().st_size for f in (tmp_path / "new" / "wal").glob("open-*")) == 1 << 20
    assert new.purge_pending_since() is None
    new.close()

    older = tmp_path / "older"
    made = EdgeStore(older)
    made.ensure_schema()
    made.close()
    config = json.loads((older / "edge_config.json").read_text())
    del config["wal_options"]  # as earlier versions wrote it
    (older / "edge_config.json").write_text(json.dumps(config))
    reopened = EdgeStore(older)
    reopened.ensure_schema()
    assert "wal_options" in json.loads((older / "edge_config.json").read_text())
    assert reopened.purge_pending_since() is not None
    assert reopened.purge_deleted() is True and reopened.purge_pending_since() is None
    reopened.close()

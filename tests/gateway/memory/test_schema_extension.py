"""A vector is a row of the schema table: one more row, made by models the gateway already runs, is
written by ingest, searched by its name, fused into "all" where its row says so and probed by a chat's
retrieval with its own minimum, with no other code changed. On both store adapters, with the real
models (tiny CLIP, MiniLM, BM25) and the ingest worker, searcher and retriever built on the longer table.

And what follows the table everywhere else: /search's `target` values, the CLI's choices, and the
minimum scores (the VISIONRAG_MEMORY_MIN_*_SCORE settings keep their meaning).
"""

from __future__ import annotations

import asyncio
import typing
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.journal import BlobStore, Journal
from gateway.memory.embed import ClipEmbedder
from gateway.memory.encoders import check
from gateway.memory.ingest import IngestWorker
from gateway.memory.retrieval import RecallQuery, Retriever, Thresholds
from gateway.memory.reuse import VectorReuse
from gateway.memory.search import Searcher, text_probes
from gateway.memory.store.base import Probe, SchemaMismatch, SearchFilter, Target, VectorStore
from gateway.memory.store.edge import EdgeStore
from gateway.memory.store.remote import RemoteStore
from gateway.memory.store.schema import CLIP_DIM, MINILM_DIM, SCHEMA, Schema, VectorSpec
from gateway.memory.text_embed import TextEncoders
from gateway.memory.texts import JournalTexts
from tests.gateway.memory.conftest import ExchangeFactory, noise_png

# The sentence model on the answer alone (one vector for the whole answer), fused into a text query's
# "all" and probed by retrieval; CLIP's question vector again under another name, searched only by name.
EXTENDED = Schema((
    *SCHEMA,
    VectorSpec("answer_meaning", "dense", MINILM_DIM, "minilm", "answer", fused_by=("text",),
               recalled_by=("text",), recall_min_score=0.3),
    VectorSpec("asked", "dense", CLIP_DIM, "clip", "question"),
))

EXCHANGES = [
    ("Why does the app crash on start?", ("The service cannot bind: port 8080 is already taken by another "
     "process. Stop that process or move the service to another port.")),
    ("What does this ER diagram show?", ("Customers have many orders, each order has many lines, and each "
     "line points at one product.")),
    ("What is wrong in this screenshot?", ("The dialog says ERR_QUOTA_7731: the monthly storage quota is used "
     "up, so uploads are refused until it is raised.")),
]


class Recording:
    """The store, with the probes of every query it was asked."""

    def __init__(self, store: VectorStore) -> None:
        self.store = store
        self.probes: list[list[Probe]] = []

    def query(self, probes, flt, limit):
        self.probes.append(list(probes))
        return self.store.query(probes, flt, limit)

    def __getattr__(self, name: str):
        return getattr(self.store, name)


@pytest.fixture(params=["edge", "qdrant-client"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Recording]:
    if request.param == "edge":
        adapter: VectorStore = EdgeStore(tmp_path / "shard", schema=EXTENDED)
    else:
        adapter = RemoteStore("extended", location=":memory:", schema=EXTENDED)
    adapter.ensure_schema()
    yield Recording(adapter)
    adapter.close()


@pytest.fixture
def ingested(journal: Journal, blobs: BlobStore, embedder: ClipEmbedder, text_encoders: TextEncoders,
             store: Recording, make_exchange: ExchangeFactory) -> dict[str, str]:
    """Question -> exchange id; the first exchange has two images (two points, its texts on the first)."""
    ids = {}
    for n, (question, answer) in enumerate(EXCHANGES):
        exchange = make_exchange(question, answer, [noise_png(1), noise_png(2)] if n == 0 else [])
        journal.append(exchange)
        ids[question] = exchange.id
    assert IngestWorker(journal, blobs, embedder, store, text=text_encoders, schema=EXTENDED).drain() == 3
    return ids


def test_the_tables_own_check() -> None:
    check(SCHEMA)
    check(EXTENDED)
    with pytest.raises(ValueError, match="no model"):
        check(Schema((VectorSpec("v", "dense", 8, "word2vec", "answer"),)))
    with pytest.raises(ValueError, match="cannot make a multi vector"):
        check(Schema((VectorSpec("v", "multi", MINILM_DIM, "minilm", "answer"),)))
    with pytest.raises(ValueError, match="distinct"):
        Schema((*SCHEMA, VectorSpec("all", "dense", CLIP_DIM, "clip", "question")))


def test_ingest_writes_the_new_vectors_once_per_exchange(ingested: dict[str, str], store: Recording,
                                                          embedder: ClipEmbedder, text_encoders: TextEncoders) -> None:
    for question, answer in EXCHANGES:
        for probe in (Probe(text_encoders.sentences([answer])[0].tolist(), "answer_meaning"),
                      Probe(embedder.embed_texts([question])[0].tolist(), "asked")):
            hits = store.query([probe], SearchFilter("default"), 10)
            # The exchange's own vector, found exactly; texts are on one point of the two-image exchange.
            assert hits[0].exchange_id == ingested[question] and hits[0].score == pytest.approx(1.0, abs=1e-3)
            assert Counter(h.exchange_id for h in hits) == Counter(ingested.values())


def test_a_search_by_the_new_name_probes_it(ingested: dict[str, str], store: Recording, embedder: ClipEmbedder,
                                            text_encoders: TextEncoders, journal: Journal) -> None:
    searcher = Searcher(embedder, store, JournalTexts(journal), text_encoders, schema=EXTENDED)  # type: ignore[arg-type]
    found = searcher.search(SearchFilter("default"), text="another process holds the port", target="answer_meaning")
    assert [p.using for p in store.probes[-1]] == ["answer_meaning"]
    assert found.hits[0].exchange_id == ingested[EXCHANGES[0][0]]

    question = EXCHANGES[1][0]
    found = searcher.search(SearchFilter("default"), text=question, target="asked")
    assert [p.using for p in store.probes[-1]] == ["asked"]
    assert found.hits[0].exchange_id == ingested[question] and found.hits[0].score == pytest.approx(1.0, abs=1e-3)
    # CLIP's vector: an image query may compare with it too (image -> text).
    searcher.search(SearchFilter("default"), image=noise_png(1), target="asked")
    assert [p.using for p in store.probes[-1]] == ["asked"]


def test_all_fuses_the_new_vector_where_its_row_says(ingested: dict[str, str], store: Recording,
                                                     embedder: ClipEmbedder, text_encoders: TextEncoders,
                                                     journal: Journal) -> None:
    searcher = Searcher(embedder, store, JournalTexts(journal), text_encoders, schema=EXTENDED)  # type: ignore[arg-type]
    found = searcher.search(SearchFilter("default"), text="ERR_QUOTA_7731", target="all")
    assert [p.using for p in store.probes[-1]] == ["image", "text", "terms", "answer_meaning"]
    assert found.hits[0].exchange_id == ingested[EXCHANGES[2][0]]
    # Not flagged for image queries: those fuse CLIP's three, as before.
    searcher.search(SearchFilter("default"), image=noise_png(2), target="all")
    assert [p.using for p in store.probes[-1]] == ["image", "question", "answer"]
    # The query's sentence vector is computed once for both vectors of the sentence model.
    probes = text_probes(embedder, text_encoders, "storage quota", ("text", "answer_meaning"), schema=EXTENDED)
    assert probes[0].vector == probes[1].vector


def test_a_chats_retrieval_probes_it_with_its_minimum(ingested: dict[str, str], store: Recording,
                                                      embedder: ClipEmbedder, text_encoders: TextEncoders,
                                                      journal: Journal) -> None:
    reuse = VectorReuse()
    retriever = Retriever(embedder, store, JournalTexts(journal), reuse, text_encoders, schema=EXTENDED)  # type: ignore[arg-type]
    sources = retriever.recall(RecallQuery("which process is holding port 8080?"), SearchFilter("default"), k=2,
                               thresholds=Thresholds())
    probes = {p.using: p.min_score for p in store.probes[-1]}
    assert probes == {"question": 0.85, "answer": 0.85, "text": 0.45, "terms": 6.0, "answer_meaning": 0.3}
    assert sources[0].exchange_id == ingested[EXCHANGES[0][0]]
    assert len(reuse) == 2  # one question vector per model whose query vector is a document's (CLIP, MiniLM)

    retriever.recall(RecallQuery("which process is holding port 8080?"), SearchFilter("default"), k=2,
                     thresholds=Thresholds({"answer_meaning": 0.5}, text=0.9))
    probes = {p.using: p.min_score for p in store.probes[-1]}
    assert probes == {"question": 0.9, "answer": 0.9, "text": 0.45, "terms": 6.0, "answer_meaning": 0.5}


def test_a_store_made_with_the_shorter_table_is_refused(tmp_path: Path) -> None:
    EdgeStore(tmp_path / "shard").ensure_schema()
    with pytest.raises(SchemaMismatch, match="visionrag reindex"):
        EdgeStore(tmp_path / "shard", schema=EXTENDED).ensure_schema()


def test_the_api_and_the_cli_take_the_tables_targets(tmp_path: Path) -> None:
    from gateway.api.app import create_app
    from gateway.cli.search import Target as CliTarget
    from tests.gateway.inprocess import settings_for

    assert typing.get_args(Target) == SCHEMA.targets == ("image", "question", "answer", "text", "terms", "all")
    assert tuple(member.value for member in CliTarget) == SCHEMA.targets
    document = create_app(settings_for(tmp_path, max_body_bytes=1 << 20)).openapi()
    body = document["paths"]["/search"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    # The UI's target list is this enum (gateway/ui/static/js/search.js reads it from /openapi.json).
    assert tuple(body["properties"]["target"]["enum"]) == SCHEMA.targets


def test_minimum_scores_from_settings_keep_their_meaning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from gateway.journal.disk import DiskBlobStore
    from gateway.journal.sqlite import SQLiteJournal
    from gateway.memory.service import Memory
    from gateway.settings import Settings

    def thresholds() -> dict[str, float | None]:
        journal = SQLiteJournal(tmp_path / "journal.sqlite3")
        try:
            memory = Memory.from_settings(Settings(_env_file=None, data_dir=tmp_path), journal,
                                          DiskBlobStore(tmp_path / "images"))
            asyncio.run(memory.image_loader.fetcher.close())
            return memory.thresholds.of(SCHEMA)
        finally:
            journal.close()

    # The settings' defaults are the table's.
    assert thresholds() == {spec.name: spec.recall_min_score for spec in SCHEMA}
    monkeypatch.setenv("VISIONRAG_MEMORY_MIN_TEXT_SCORE", "0.7")  # CLIP text-text: question and answer
    monkeypatch.setenv("VISIONRAG_MEMORY_MIN_SENTENCE_SCORE", "0.5")  # the sentence model's `text`
    assert thresholds() == {"image": 0.85, "question": 0.7, "answer": 0.7, "text": 0.5, "terms": 6.0}
    monkeypatch.setenv("VISIONRAG_MEMORY_MIN_SCORES", "answer:0.8,terms:4")
    assert thresholds() == {"image": 0.85, "question": 0.7, "answer": 0.8, "text": 0.5, "terms": 4.0}
    monkeypatch.setenv("VISIONRAG_MEMORY_MIN_SCORES", "nothing:1")
    with pytest.raises(ValueError, match="vector:score"):
        thresholds()

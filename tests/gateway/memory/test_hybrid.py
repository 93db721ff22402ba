"""Hybrid text retrieval end to end below HTTP: real exchanges through the ingest worker (tiny CLIP, the
genuine all-MiniLM-L6-v2, BM25) into both store adapters, then searched through `Searcher`.

CLIP here is the tiny random-weight model (no real CLIP offline): its three rankings are noise, so the
assertions on `target="all"` are that fusion keeps what the text signals found near the top, and the
first-place assertions are on the text signals and their fusion."""

from __future__ import annotations

import pytest

from gateway.journal import BlobStore, Journal
from gateway.memory.embed import ClipEmbedder
from gateway.memory.ingest import IngestWorker
from gateway.memory.search import Searcher, text_probes
from gateway.memory.store.base import SearchFilter, VectorStore
from gateway.memory.text_embed import TextEncoders
from gateway.memory.texts import JournalTexts
from tests.gateway.memory.conftest import ExchangeFactory

PARAGRAPHS = (
    ("The diagram shows a three-tier web application. Browsers talk to a load balancer, which spreads "
    "requests over four stateless API servers running in two availability zones. Each API server "
    "keeps no session state; sessions live in a shared Redis cluster so any server can answer any "
    "request, and a failed server is simply taken out of rotation by the health checks."),
    ("Behind the API tier there is a PostgreSQL primary with two streaming replicas. Writes go to the "
    "primary; read-heavy endpoints such as the catalogue and search pages are routed to the replicas. "
    "Replication lag is monitored and an alert fires when it grows past a few seconds, because stale "
    "reads would show customers outdated stock levels."),
    ("Background work is handled by a queue: the API publishes events to RabbitMQ and a pool of worker "
    "processes consumes them to send e-mails, resize uploaded product photos and recompute "
    "recommendations. Workers scale independently of the API servers based on queue depth."),
    ("Static assets and product images are served from a CDN in front of an object storage bucket, so "
    "the API servers never serve large files themselves. Cache headers are long-lived and file names "
    "carry a content hash, which makes invalidation unnecessary after a deployment."),
    ("Finally, the box at the bottom right is the reporting pipeline: every night a batch job exports "
    "the orders table to Parquet files in a separate analytics warehouse, and the finance team's "
    "dashboards read only from that warehouse, never from the production database."),
)
LONG_ANSWER = "\n\n".join(PARAGRAPHS)

OTHERS = [
    ("What does this ER diagram show?", ("It models customers, orders and order lines. A customer has many "
     "orders, each order has many lines, and each line references one product by product_id.")),
    ("Why does the app crash on start?", ("The stack trace shows the service fails to bind because port "
     "8080 is already in use by another process; stop that process or change the port.")),
    ("What is wrong in this screenshot?", ("The dialog shows error ERR_QUOTA_7731: the project has used its "
     "monthly storage quota, so uploads are rejected until the quota is raised.")),
    ("Explain this sequence diagram.", ("The client requests a token from the auth server, then calls the "
     "API with that token; the API validates it against the auth server's public keys.")),
    ("What does the dashboard say?", ("CPU usage is flat at 40 percent, memory grows slowly over the week, "
     "and the error rate spiked briefly on Tuesday during the deployment.")),
    ("Describe the network diagram.", ("Two VPCs are peered; the private subnets reach the internet through "
     "a NAT gateway, and the bastion host is the only machine with a public address.")),
    ("What columns does the users table have?", ("id, email, created_at, last_login_at and a boolean "
     "is_admin column; email carries a unique index.")),
    ("Summarize this class diagram.", ("An abstract Shape class with area() is extended by Circle and "
     "Rectangle; a Canvas aggregates many shapes and draws them in order.")),
]


@pytest.fixture
def searcher(journal: Journal, blobs: BlobStore, embedder: ClipEmbedder, text_encoders: TextEncoders,
             store: VectorStore, make_exchange: ExchangeFactory) -> Searcher:
    exchanges = [make_exchange("What does this architecture diagram show?", LONG_ANSWER)]
    exchanges += [make_exchange(q, a) for q, a in OTHERS]
    for exchange in exchanges:
        journal.append(exchange)
    worker = IngestWorker(journal, blobs, embedder, store, text=text_encoders)
    worker.drain()
    assert store.count() == len(exchanges)
    return Searcher(embedder, store, JournalTexts(journal), text_encoders)


def answers(searcher: Searcher, text: str, target: str, limit: int = 5) -> list[str]:
    hits = searcher.search(SearchFilter("default"), text=text, target=target, limit=limit).hits  # type: ignore[arg-type]
    return [hit.answer for hit in hits]


def test_a_long_answer_is_found_by_a_fact_in_its_last_paragraph(searcher: Searcher) -> None:
    query = "where do the finance dashboards get their order data?"
    assert answers(searcher, query, "text")[0] == LONG_ANSWER
    assert LONG_ANSWER in answers(searcher, query, "all", limit=3)


def test_an_identifier_finds_its_exchange_first(searcher: Searcher) -> None:
    found = answers(searcher, "ERR_QUOTA_7731", "terms")
    assert "ERR_QUOTA_7731" in found[0] and len(found) == 1  # BM25: only exchanges sharing the term
    assert "ERR_QUOTA_7731" in answers(searcher, "ERR_QUOTA_7731", "all")[0]


def test_text_signals_fused_in_the_store(searcher: Searcher, text_encoders: TextEncoders) -> None:
    """The sentence model and BM25 as two probes of one store query (prefetches + RRF)."""
    probes = [p for p in text_probes(searcher.embedder, text_encoders, "which port is already in use?")
              if p.using in ("text", "terms")]
    assert [p.using for p in probes] == ["text", "terms"]
    hits = searcher.query(probes, SearchFilter("default"), limit=3)
    assert "port 8080" in hits[0].answer
    assert hits[0].score > hits[1].score  # RRF scores, fused by the store


def test_other_tenants_never_match(searcher: Searcher) -> None:
    assert searcher.search(SearchFilter("someone-else"), text="ERR_QUOTA_7731", target="all").hits == []


def test_the_gateway_says_at_start_up_that_a_pre_hybrid_store_needs_a_reindex(
    tmp_path, journal: Journal, blobs: BlobStore, clip_cache, caplog: pytest.LogCaptureFixture
) -> None:
    """Chats go on (the journal records them); memory stays off with one clear error instead of failing
    every ingest batch against a store that cannot take the new vectors."""
    import asyncio
    import logging

    import qdrant_edge as qe

    from gateway.memory.service import Memory
    from gateway.memory.store.edge import EdgeStore
    from gateway.settings import Settings

    shard = tmp_path / "old-shard"
    qe.EdgeShard.create(str(shard), qe.EdgeConfig(vectors={
        name: qe.EdgeVectorParams(size=512, distance=qe.Distance.Cosine) for name in ("image", "question", "answer")
    })).close()
    settings = Settings(data_dir=tmp_path / "data", fastembed_cache_dir=clip_cache)
    memory = Memory.from_settings(settings, journal, blobs, store=EdgeStore(shard))
    with caplog.at_level(logging.ERROR, logger="visionrag.memory"):
        memory.start()
    assert "visionrag reindex" in caplog.text
    assert not memory.worker.running
    assert "visionrag reindex" in memory.stats()["schema_error"]
    asyncio.run(memory.stop())

"""Retrieval quality per signal and fused, on realistic exchanges (a benchmark, not a test).

    make bench-memory-quality     # or: .venv/bin/python -m bench.memory_quality   (~1-2 min on 2 cores)

240 past exchanges, generated from templates so that every one has its own subject, identifiers and
facts: questions about architecture diagrams, ER models and screenshots, answers of five to seven
paragraphs (~240 words, ~320 tokens; the distinctive fact of each is in its LAST paragraph, far past
the 77 tokens CLIP reads). Shared filler paragraphs make the answers look alike, as real ones do. 240 queries, 60
of each kind:
- paraphrase: the question asked again in other words;
- late_fact: something stated only in the answer's last paragraph, asked in other words;
- identifier: an exact identifier from the answer (error code, table.column, port, job name);
- conceptual: the design the answer describes, described without its name.
Each exchange goes through the real ingest worker into the embedded store (Qdrant Edge); queries go
through `Searcher.query` with the probes of each signal: CLIP text (question + answer vectors fused),
the sentence model (all-MiniLM-L6-v2 passages, MAX_SIM), BM25, and fused (every probe, weighted RRF in the
store; `target=all` of a text query: CLIP text->image, sentence, BM25; these exchanges have no image,
so that is sentence + BM25). CLIP is the tiny random-weight model here (no real CLIP weights offline),
so its row is a noise floor; "fused + clip_text" shows what adding CLIP's text rankings would do.
Reports recall@1, recall@5 and MRR@10 per kind; JSON into bench/results/.
"""

from __future__ import annotations

import json
import os
import random
import sys
import tempfile
import time
import uuid
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from gateway.journal import Exchange
from gateway.journal.disk import DiskBlobStore
from gateway.journal.sqlite import SQLiteJournal
from gateway.memory.embed import ClipEmbedder
from gateway.memory.ingest import IngestWorker
from gateway.memory.search import Searcher, text_probes
from gateway.memory.store.base import SearchFilter
from gateway.memory.store.edge import EdgeStore
from gateway.memory.text_embed import TextEncoders
from gateway.memory.texts import JournalTexts

ROOT = Path(__file__).resolve().parent.parent
CLIP = ROOT / "models" / "clip-tiny"

CODE_A = ["Amber", "Cobalt", "Crimson", "Silent", "Northern", "Granite", "Velvet", "Copper", "Hidden", "Rapid",
          "Golden", "Frozen", "Scarlet", "Misty", "Iron"]
CODE_B = ["Falcon", "Harbor", "Lantern", "Meadow", "Orchid", "Pine", "Quartz", "Raven", "Summit", "Tide",
          "Willow", "Ember", "Fjord", "Glacier", "Heron", "Juniper"]
DOMAINS = ["billing", "inventory", "shipping", "payroll", "customer support", "fraud detection", "search",
           "recommendations", "identity", "notifications", "analytics", "scheduling"]
# (name used in the answer, how the answer explains it, a description without the name for queries)
PATTERNS = [
    ("event sourcing", "every change is appended to an immutable event log and the current state is rebuilt by replaying it",
     "state rebuilt by replaying an append-only history of changes"),
    ("CQRS", "commands write to one model while queries read from a separately maintained read model",
     "separate models for writing and for reading data"),
    ("a saga", "a long business transaction is split into local steps, each with a compensating action if a later step fails",
     "undoing earlier steps with compensating actions when a multi-step transaction fails"),
    ("the strangler fig pattern", "new services gradually take over routes from the legacy monolith until it can be switched off",
     "gradually replacing an old monolith piece by piece behind the same entry point"),
    ("a sidecar proxy", "each service instance runs next to a small proxy that handles TLS, retries and metrics",
     "a helper process beside every instance that takes care of encryption and retries"),
    ("fan-out on write", "each new post is copied into the timelines of all followers at write time",
     "copying new items into every reader's feed as soon as they are written"),
    ("a circuit breaker", "calls to a failing dependency are stopped for a while after repeated errors so it can recover",
     "stop calling a dependency that keeps failing and try again later"),
    ("sharding by tenant", "each customer's rows live on one of many database shards chosen by a hash of the tenant id",
     "splitting the database so every customer lives on one partition"),
    ("a write-ahead outbox", "events are written to an outbox table in the same transaction as the data and relayed later",
     "publishing messages reliably by storing them with the business data in one transaction"),
    ("blue-green deployment", "two identical environments exist and traffic is switched from the old to the new in one step",
     "two copies of production and flipping all traffic at once during a release"),
    ("a dead letter queue", "messages that fail processing repeatedly are moved aside to a separate queue for inspection",
     "parking messages that keep failing somewhere separate to look at them later"),
    ("read replicas", "reads are spread over copies of the primary database that follow it asynchronously",
     "sending reads to asynchronous copies of the main database"),
    ("a rate limiter with token buckets", "each client gets a bucket of tokens refilled at a fixed rate and requests spend tokens",
     "throttling clients with a refilling allowance of requests"),
    ("a materialized view", "an expensive join is precomputed into a table that is refreshed periodically",
     "precomputing an expensive query result into its own table"),
    ("leader election", "the nodes agree on one leader through a consensus service and only it runs the scheduled jobs",
     "making sure only one node at a time runs the periodic work"),
    ("a bloom filter in front of the cache", "a probabilistic set answers quickly when a key is certainly absent, avoiding lookups",
     "a compact probabilistic check that skips lookups for keys that cannot exist"),
    ("change data capture", "the database's transaction log is streamed to other systems as row-level change events",
     "streaming every row change from the database log to other systems"),
    ("backpressure", "producers slow down when the consumers' queues fill up instead of dropping work",
     "making producers slow down when consumers cannot keep up"),
    ("a two-phase commit", "a coordinator asks every participant to prepare and commits only if all of them agree",
     "a coordinator that commits only after every participant votes yes"),
    ("soft deletes", "rows are flagged as deleted with a timestamp instead of being removed from the table",
     "marking records as removed with a flag rather than deleting them"),
]
KINDS_OF_QUESTION = [
    ("What does this architecture diagram of {code} show?", "Can you walk me through how the {code} system is put together?"),
    ("Explain this ER diagram for the {code} database.", "How are the tables of the {code} data model related?"),
    ("What is going on in this screenshot of the {code} console?", "What does the {code} admin screen tell us here?"),
]
# (late fact in the answer, the same asked in other words); {n} and {place} make each unique.
FACTS = [
    ("the nightly export of the {thing} table is written as Parquet files to the {place} warehouse at {n}:00 UTC",
     "when does the {thing} data get copied into the {place} warehouse each night?"),
    ("on-call engineers for the {thing} component are paged through the {place} rotation and must acknowledge within {n} minutes",
     "how quickly must the {place} on-call rotation respond to pages about {thing}?"),
    ("the {thing} backups are retained for {n} days in the {place} region before they are deleted",
     "how long are the {thing} backups kept in {place}?"),
    ("the load test showed the {thing} endpoint saturating at about {n} hundred requests per second from the {place} office",
     "what throughput did the {thing} endpoint reach before it saturated in the {place} load test?"),
    ("a migration moving the {thing} records stored in {place} to the new schema is planned for sprint {n}",
     "when will the {thing} records in {place} move to the new schema?"),
]
THINGS = ["invoices", "orders", "refunds", "sessions", "audit events", "shipments", "tickets", "payouts", "accounts",
          "coupons", "subscriptions", "devices"]
PLACES = ["Frankfurt", "Oregon", "Singapore", "Dublin", "Sydney", "Toronto", "Mumbai", "Sao Paulo", "Tokyo", "Virginia",
          "Stockholm", "Zurich"]
FILLER = [
    ("The arrows from left to right show the request path. Solid lines are synchronous HTTP calls and dashed lines are "
    "asynchronous messages; the legend in the corner explains the colours, where green boxes are managed services and "
    "grey boxes run on the team's own virtual machines."),
    ("Monitoring is drawn as a separate lane at the bottom: every component exports metrics to a central Prometheus, "
    "logs are shipped to a search cluster, and dashboards group them by service. Alerts route to the on-call channel "
    "and to e-mail during office hours."),
    ("Configuration is loaded from environment variables at start-up and secrets come from a vault; nothing sensitive "
    "is baked into the images. Deployments go through a pipeline that runs the tests, builds a container and rolls it "
    "out gradually across the zones."),
    ("Two details are easy to miss in the picture. The cache sits in front of the database only for read paths, and "
    "the batch jobs in the top right corner run outside business hours so they do not compete with interactive traffic."),
    ("Authentication happens at the edge: the gateway validates tokens and forwards the user id in a header, so the "
    "services behind it trust that header and never see passwords. Internal calls use mutual TLS between services."),
    ("The data flows through three stages: ingestion validates and normalizes incoming records, processing enriches "
    "them with reference data, and the serving layer exposes them through a small set of read-only endpoints."),
]


def corpus(seed: int = 7) -> tuple[list[tuple[str, str]], list[tuple[str, str, int]]]:
    """(question, answer) per exchange and (kind, query, index of the exchange it should find)."""
    rng = random.Random(seed)
    codes = [f"{a} {b}" for a in CODE_A for b in CODE_B]
    rng.shuffle(codes)
    exchanges: list[tuple[str, str]] = []
    queries: list[tuple[str, str, int]] = []
    combos = [(d, p) for d in range(len(DOMAINS)) for p in range(len(PATTERNS))]
    rng.shuffle(combos)
    for i, (d, p) in enumerate(combos[:240]):
        code, domain = codes[i], DOMAINS[d]
        pattern, how, concept = PATTERNS[p]
        question, paraphrase = KINDS_OF_QUESTION[i % len(KINDS_OF_QUESTION)]
        # (thing, place) is unique below 144 exchanges; past it the fact template differs.
        fact, fact_query = FACTS[(i // 144 + i) % len(FACTS)]
        values = {"thing": THINGS[i % len(THINGS)], "place": PLACES[(i // len(THINGS)) % len(PLACES)], "n": 2 + i % 23}
        ident = rng.choice([
            f"ERR_{domain.split()[0].upper()}_{rng.randrange(1000, 9999)}",
            f"{values['thing'].replace(' ', '_')}_{rng.randrange(10, 99)}.{rng.choice(['tenant_ref', 'state_code', 'ext_id'])}",
            f"port {rng.randrange(20000, 39999)}",
            f"job-{domain.split()[0]}-{rng.choice(['reconcile', 'compact', 'rollup'])}-{rng.randrange(100, 999)}",
        ])
        fillers = rng.sample(FILLER, rng.randint(2, 4))
        paragraphs = [
            (f"This is the {code} system, which handles {domain} for the company. The diagram groups its components "
            f"by responsibility, with the public entry points at the top and the data stores at the bottom."),
            fillers[0],
            (f"The central idea is {pattern}: {how}. The team chose it for {domain} because it keeps the hot path "
            f"simple and makes failures easier to reason about."),
            *fillers[1:],
            (f"When something goes wrong, the logs mention {ident}; that is the first thing to search for in the "
            f"incident channel."),
            f"One last detail at the bottom of the picture: {fact.format(**values)}.",
        ]
        exchanges.append((question.format(code=code), "\n\n".join(paragraphs)))
        queries += [
            ("paraphrase", paraphrase.format(code=code), i),
            ("late_fact", fact_query.format(**values), i),
            ("identifier", ident, i),
            ("conceptual", f"{concept} for {domain}", i),
        ]
    # 60 per kind: every fourth exchange's queries of each kind, rotating.
    chosen = [q for n, q in enumerate(queries) if (n // 4) % 4 == n % 4]
    return exchanges, chosen


SIGNALS = {
    "clip_text": ("question", "answer"),
    "sentence": ("text",),
    "bm25": ("terms",),
    "fused (all)": ("image", "text", "terms"),  # what target=all sends for a text query
    "fused + clip_text": ("image", "question", "answer", "text", "terms"),
}


def main() -> None:
    exchanges, queries = corpus()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        journal, blobs = SQLiteJournal(root / "journal.sqlite3"), DiskBlobStore(root / "images")
        ids = []
        for n, (question, answer) in enumerate(exchanges):
            exchange_id = uuid.uuid4().hex
            ids.append(exchange_id)
            journal.append(Exchange(id=exchange_id, created_at=1.75e9 + n, endpoint="chat.completions", model="m",
                                    tenant="default", user=None, messages=[{"role": "user", "text": question}],
                                    images=[], answer=answer, finish_reason="stop", usage=None, latency_ms=1.0))
        clip = ClipEmbedder(cache_dir=CLIP, threads=2, batch_size=16)
        text = TextEncoders(cache_dir=ROOT / "models" / "text", threads=2, batch_size=16)
        store = EdgeStore(root / "shard")
        store.ensure_schema()
        started = time.perf_counter()
        IngestWorker(journal, blobs, clip, store, text=text, batch_size=32).drain()
        ingest_s = time.perf_counter() - started
        searcher = Searcher(clip, store, JournalTexts(journal), text)
        flt = SearchFilter("default")
        ranks: dict[str, dict[str, list[int | None]]] = {s: {} for s in SIGNALS}
        for kind, query, target in queries:
            probes = text_probes(clip, text, query, ("image", "question", "answer", "text", "terms"))
            for signal, names in SIGNALS.items():
                hits = searcher.query([p for p in probes if p.using in names], flt, limit=10)
                found = [h.exchange_id for h in hits]
                rank = found.index(ids[target]) + 1 if ids[target] in found else None
                ranks[signal].setdefault(kind, []).append(rank)
        store.close()
        journal.close()

    kinds = ["paraphrase", "late_fact", "identifier", "conceptual"]
    results: dict[str, dict[str, dict[str, float]]] = {}
    for signal, by_kind in ranks.items():
        results[signal] = {}
        for kind in [*kinds, "overall"]:
            values = [r for k in kinds for r in by_kind[k]] if kind == "overall" else by_kind[kind]
            results[signal][kind] = {
                "recall@1": sum(r == 1 for r in values) / len(values),
                "recall@5": sum(r is not None and r <= 5 for r in values) / len(values),
                "mrr@10": sum(1 / r for r in values if r) / len(values),
            }
    print(f"{len(exchanges)} exchanges, {len(queries)} queries ({len(queries) // 4} per kind); ingest {ingest_s:.0f} s\n")
    print("| signal | " + " | ".join(f"{k} R@1 / R@5 / MRR@10" for k in [*kinds, "overall"]) + " |")
    print("|---|" + "---|" * (len(kinds) + 1))
    for signal, by_kind in results.items():
        cells = [f"{m['recall@1']:.2f} / {m['recall@5']:.2f} / {m['mrr@10']:.2f}" for m in by_kind.values()]
        print(f"| {signal} | " + " | ".join(cells) + " |")
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "memory_quality.json").write_text(json.dumps({"results": results, "exchanges": len(exchanges),
                                                         "queries": len(queries), "ingest_s": ingest_s,
                                                         "python": sys.version.split()[0]}, indent=2))


if __name__ == "__main__":
    main()

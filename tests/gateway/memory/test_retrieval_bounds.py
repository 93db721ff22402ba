"""Retrieval for a chat is bounded whatever the client sends: the models read at most /search's text cap
of the last message, and the store is asked for a bounded number of hits however long the history is.

The real models (tiny CLIP, MiniLM, BM25 through fastembed) and the embedded store, as the gateway
builds them; each model's input is recorded on its way in.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from gateway.journal import Exchange
from gateway.memory.embed import CLIP_TEXT_CHARS, TEXT_MAX_CHARS
from gateway.memory.retrieval import MAX_KNOWN_FETCH, RecallQuery, Thresholds
from gateway.memory.search import QUERY_MAX_CHARS
from gateway.memory.service import Memory
from gateway.memory.store.base import SearchFilter
from gateway.memory.text_embed import SENTENCE_CHARS

QUESTION = "Which service owns the orders table in the billing schema?"


def recorded(fn: Callable[..., Any], inputs: list[Any]) -> Callable[..., Any]:
    def spy(arg: Any, *rest: Any, **kwargs: Any) -> Any:
        inputs.append(arg)
        return fn(arg, *rest, **kwargs)

    return spy


def ingest(memory: Memory, answers: list[str]) -> None:
    for answer in answers:
        memory.journal.append(Exchange(
            id=uuid.uuid4().hex, created_at=time.time(), endpoint="chat.completions", model="m", tenant="default",
            user=None, messages=[{"role": "user", "text": QUESTION}], images=[], answer=answer,
            finish_reason="stop", usage=None, latency_ms=1.0))
    assert memory.worker.drain() == len(answers)


def test_the_models_read_at_most_the_query_cap_of_a_long_message(memory: Memory, monkeypatch) -> None:
    ingest(memory, ["The orders table belongs to the billing service."])
    seen: dict[str, list[Any]] = {"clip": [], "minilm": [], "bm25": []}
    # Queries run the models through their batchers (gateway.memory.batching); BM25 directly.
    clip, sentences = memory.retriever.embedder.text_runs, memory.retriever.text.sentence_runs  # type: ignore[attr-defined]
    monkeypatch.setattr(clip, "fn", recorded(clip.fn, seen["clip"]))
    monkeypatch.setattr(sentences, "fn", recorded(sentences.fn, seen["minilm"]))
    monkeypatch.setattr(memory.text, "terms_query", recorded(memory.text.terms_query, seen["bm25"]))

    # The question first, then a pasted log 50 times the cap (a chat's message may be up to the body limit).
    message = QUESTION + "\n\n" + "GET /orders 200 12ms worker-7 " * (QUERY_MAX_CHARS * 50 // 30)
    sources = memory.retriever.recall(RecallQuery(message), SearchFilter("default"), k=4, thresholds=Thresholds())

    assert [s.answer for s in sources] == ["The orders table belongs to the billing service."]
    texts = {"clip": [t for batch in seen["clip"] for t in batch],
             "minilm": [t for batch in seen["minilm"] for t in batch], "bm25": seen["bm25"]}
    assert all(texts.values()), texts.keys()  # every model ran
    for model, inputs in texts.items():
        assert all(len(text) <= QUERY_MAX_CHARS for text in inputs), (model, [len(t) for t in inputs])
        assert all(text.startswith(QUESTION) for text in inputs)


def test_the_store_is_asked_for_a_bounded_number_of_hits_however_long_the_history(memory: Memory,
                                                                                  monkeypatch) -> None:
    answers = [f"The orders table belongs to service number {n}." for n in range(8)]
    ingest(memory, answers)
    limits: list[int] = []
    query = memory.store.query
    monkeypatch.setattr(memory.store, "query", lambda probes, flt, limit: limits.append(limit) or query(probes, flt, limit))

    # A conversation of 10,000 earlier answers, three of which are stored exchanges' (found, then dropped).
    known = frozenset([*answers[:3], *(f"an earlier answer, number {n}" for n in range(10_000))])
    sources = memory.retriever.recall(RecallQuery(QUESTION, known_answers=known), SearchFilter("default"), k=4,
                                      thresholds=Thresholds())

    assert limits == [4 * 2 + MAX_KNOWN_FETCH]
    assert len(sources) == 4 and {s.answer for s in sources} <= set(answers[3:])


@pytest.mark.parametrize("known", [0, 1, MAX_KNOWN_FETCH + 1])
def test_a_short_history_still_over_fetches_by_its_own_length(memory: Memory, monkeypatch, known: int) -> None:
    ingest(memory, ["The orders table belongs to the billing service."])
    limits: list[int] = []
    query = memory.store.query
    monkeypatch.setattr(memory.store, "query", lambda probes, flt, limit: limits.append(limit) or query(probes, flt, limit))
    memory.retriever.recall(RecallQuery(QUESTION, known_answers=frozenset(f"a{n}" for n in range(known))),
                            SearchFilter("default"), k=3, thresholds=Thresholds())
    assert limits == [6 + min(known, MAX_KNOWN_FETCH)]


def test_ingest_embeds_at_most_the_text_cap_of_a_long_exchange(memory: Memory, monkeypatch) -> None:
    """A recorded exchange is bounded like a query: an 8 MiB question took seconds and gigabytes of CLIP's
    tokenizer when it was embedded whole. Each model gets at most what it reads of a text."""
    seen: dict[str, list[Any]] = {"clip": [], "minilm": [], "bm25": []}
    models = {"clip": memory.embedder._text_model(), "minilm": memory.text._load("dense"),
              "bm25": memory.text._load("sparse")}
    for name, model in models.items():
        monkeypatch.setattr(model, "embed", recorded(model.embed, seen[name]))
    log = "GET /orders 200 12ms worker-7 " * ((1 << 20) // 30)  # 1 MiB
    ingest(memory, ["The orders table belongs to the billing service.\n\n" + log])

    texts = {name: [t for batch in batches for t in batch] for name, batches in seen.items()}
    assert all(texts.values()), texts.keys()  # every model ran
    limits = {"clip": CLIP_TEXT_CHARS, "minilm": SENTENCE_CHARS, "bm25": 2 * TEXT_MAX_CHARS + 1}
    for name, inputs in texts.items():
        assert max(len(t) for t in inputs) <= limits[name], (name, [len(t) for t in inputs])
    # What was stored is still found by its head.
    sources = memory.retriever.recall(RecallQuery(QUESTION), SearchFilter("default"), k=4, thresholds=Thresholds())
    assert len(sources) == 1 and sources[0].answer.startswith("The orders table belongs to the billing service.")

"""Exchange -> points: deterministic ids, one point per image, text vectors on the first point only."""

from __future__ import annotations

from datetime import UTC, datetime

from gateway.memory.points import plan_points, point_id
from gateway.memory.store.points import rfc3339


def test_point_ids_are_deterministic_and_distinct_per_image() -> None:
    assert point_id("abc", 0) == point_id("abc", 0)
    assert point_id("abc", 0) != point_id("abc", 1)
    assert point_id("abc", 0) != point_id("abd", 0)


def test_one_point_per_image_with_text_vectors_on_the_first(make_exchange, blobs) -> None:
    exchange = make_exchange("compare these", "the left one is red", [b"\x89PNG-a", b"\x89PNG-b", b"\x89PNG-c"],
                             user="alice", source_url="https://example.com/a.png")
    plans = plan_points(exchange)
    assert [p.id for p in plans] == [point_id(exchange.id, i) for i in range(3)]
    assert [p.image_sha256 for p in plans] == [i.sha256 for i in exchange.images]
    assert (plans[0].question, plans[0].answer) == ("compare these", "the left one is red")
    assert all(p.question is None and p.answer is None for p in plans[1:])
    payload = plans[1].payload
    assert payload["exchange_id"] == exchange.id
    assert payload["tenant"] == "default" and payload["user"] == "alice" and payload["model"] == "tiny-vlm"
    assert payload["image_index"] == 1 and payload["image_sha256"] == exchange.images[1].sha256
    # The texts and the client's image URL (possibly a pre-signed link) are the journal's alone
    # (gateway.memory.texts): a deletion must not leave them in the store.
    assert "question" not in payload and "answer" not in payload
    assert "image_url" not in payload and "https://example.com" not in repr([p.payload for p in plans])
    assert payload["time"].endswith("Z") and payload["ts"] == exchange.created_at


def test_text_only_exchange_is_one_point_without_image(make_exchange) -> None:
    plans = plan_points(make_exchange("hello?", "hi", []))
    assert len(plans) == 1
    assert plans[0].image_sha256 is None and plans[0].question == "hello?" and plans[0].answer == "hi"


def test_statuses_error_skipped_incomplete_stored(make_exchange) -> None:
    assert plan_points(make_exchange("q", "", [], status="error")) == []
    incomplete = plan_points(make_exchange("q", "partial ans", [], status="incomplete"))
    assert len(incomplete) == 1 and incomplete[0].payload["status"] == "incomplete"


def test_nothing_to_embed_yields_no_point(make_exchange) -> None:
    assert plan_points(make_exchange("", "   ", [])) == []
    # An empty answer (a cut-off stream) still leaves the question to embed.
    only_question = plan_points(make_exchange("q", "", []))
    assert only_question[0].answer is None and only_question[0].question == "q"


def test_rfc3339_is_utc_for_seconds_naive_and_aware_datetimes() -> None:
    assert rfc3339(0) == "1970-01-01T00:00:00Z"
    assert rfc3339(datetime(2026, 5, 1, 12, 0)) == "2026-05-01T12:00:00Z"
    aware = datetime(2026, 5, 1, 14, 0, tzinfo=UTC).astimezone()
    assert rfc3339(aware) == "2026-05-01T14:00:00Z"

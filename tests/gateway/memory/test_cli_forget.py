"""`visionrag forget` against a real data dir (embedded store) and the tiny CLIP."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gateway.cli import app
from gateway.journal.sqlite import SQLiteJournal
from gateway.settings import Settings
from tests.gateway.memory.test_cli import docs, env, run  # noqa: F401 - fixtures
from tests.gateway.memory.test_forget import RefusingStore, found_in


def test_forget_by_id_then_by_date_leaves_nothing(env: Path, docs: Path) -> None:  # noqa: F811
    run("ingest", str(docs))
    hits = json.loads(run("search", "a caption about picture 2", "--target", "answer", "--json", "--limit", "1"))
    target = hits["data"][0]
    assert target["answer"] == "a caption about picture 2"

    assert "forgotten: 1" in run("forget", target["exchange_id"])
    again = json.loads(run("search", "a caption about picture 2", "--target", "answer", "--json"))
    assert target["exchange_id"] not in [hit["exchange_id"] for hit in again["data"]]
    assert not (env / "images" / target["image_sha256"][:2] / target["image_sha256"]).exists()
    assert found_in(env, {"caption": b"a caption about picture 2"}) == {}

    assert "forgotten: 3" in run("forget", "--before", "2999-01-01")
    journal = SQLiteJournal(env / "journal.sqlite3")
    assert journal.count() == 0
    journal.close()
    assert [p for p in (env / "images").rglob("*") if p.is_file()] == []
    assert found_in(env, {"caption": b"a caption about picture"}) == {}

    refused = CliRunner().invoke(app, ["forget"])
    assert refused.exit_code == 1 and "give exchange ids" in refused.output


def test_forget_while_the_store_refuses_forgets_now_and_finishes_later(
        env: Path, docs: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    from gateway.memory import service

    run("ingest", str(docs))
    refusing: list[RefusingStore] = []

    def open_refusing(settings):  # the CLI's real store, refusing deletions (see RefusingStore)
        store = RefusingStore(open_store(settings))
        store.refusing.set()
        refusing.append(store)
        return store

    open_store = service.open_store
    monkeypatch.setattr(service, "open_store", open_refusing)
    result = CliRunner().invoke(app, ["forget", "--before", "2999-01-01"])
    assert result.exit_code == 0, result.output
    assert "forgotten: 4" in result.output and "refused" in result.output
    assert refusing[0].refused == 1
    journal = SQLiteJournal(env / "journal.sqlite3")
    assert journal.count() == 0 and len(journal.forgetting()) == 4  # gone from the journal, the rest recorded
    journal.close()
    assert [p for p in (env / "images").rglob("*") if p.is_file()] == []
    assert found_in(env, {"caption": b"a caption about picture"}) == {}

    monkeypatch.setattr(service, "open_store", open_store)  # the store takes writes again
    assert "forgotten: 0" in run("forget", "--before", "2999-01-01")
    journal = SQLiteJournal(env / "journal.sqlite3")
    assert journal.forgetting() == []
    journal.close()
    store = open_store(Settings(_env_file=None))
    try:
        assert store.count() == 0
    finally:
        store.close()


def test_forget_by_prefix_through_the_running_gateway(env: Path, start_gateway, fake_upstream,  # noqa: F811
                                                      make_exchange) -> None:
    from dataclasses import replace

    env.mkdir(parents=True)
    journal = SQLiteJournal(env / "journal.sqlite3")
    for exchange_id in ("c0ffee11" + "0" * 24, "c0ffee22" + "0" * 24):
        journal.append(replace(make_exchange("q", "a"), id=exchange_id))
    journal.close()
    gateway = start_gateway(fake_upstream().base_url, data_dir=env)
    runner = CliRunner()

    ambiguous = runner.invoke(app, ["forget", "--gateway", gateway.url, "c0ffee"])
    assert ambiguous.exit_code == 1
    said = " ".join(ambiguous.output.split())
    assert "(HTTP 400)" in said and "c0ffee11" in said and "c0ffee22" in said
    forgot = runner.invoke(app, ["forget", "--gateway", gateway.url, "c0ffee2"], catch_exceptions=False)
    assert forgot.exit_code == 0 and "forgotten: 1" in forgot.output
    journal = SQLiteJournal(env / "journal.sqlite3")
    assert [e.id for e in journal.recent("default", limit=10)] == ["c0ffee11" + "0" * 24]
    journal.close()

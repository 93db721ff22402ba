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

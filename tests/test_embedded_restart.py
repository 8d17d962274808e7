"""The embedded PostgreSQL after a hard stop: a container killed with SIGKILL leaves
`postmaster.pid` behind, and in the restarted container the pid in it may belong to another
process (container pids start over at 1). The server must start anyway."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from mediaplane.db.embedded import EmbeddedPostgres


@pytest.fixture
def pg_base() -> Iterator[Path]:
    # Reachable by the `embedded_postgres` system user when tests run as root.
    base = Path(tempfile.mkdtemp(prefix="mediaplane-restart-"))
    base.chmod(0o755)
    yield base
    shutil.rmtree(base, ignore_errors=True)


def test_a_stale_postmaster_pid_naming_a_live_non_postgres_process_is_ignored(
    pg_base: Path,
) -> None:
    pgdata = pg_base / "pgdata"
    server = EmbeddedPostgres(pgdata)
    server.start()
    left_behind = (pgdata / "postmaster.pid").read_text().splitlines()
    server.stop()
    assert not (pgdata / "postmaster.pid").exists()

    # What SIGKILL leaves, with the pid now taken by a live process that is not PostgreSQL
    # (not this one: a server "stopped" at a wrong pid would take pytest down with it).
    bystander = subprocess.Popen(["sleep", "60"])
    try:
        left_behind[0] = str(bystander.pid)
        (pgdata / "postmaster.pid").write_text("\n".join(left_behind) + "\n")

        url = server.start()
        try:
            with psycopg.connect(url, connect_timeout=5) as conn:
                assert conn.execute("SELECT 1").fetchone() == (1,)
        finally:
            server.stop()
        assert bystander.poll() is None, "the bystander was killed as if it were the server"
    finally:
        bystander.kill()
        bystander.wait()

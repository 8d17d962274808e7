"""Processes starting at once (API and worker containers, `docker compose up`) all migrate on
start: they must not race on an empty database."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from sqlalchemy import create_engine, text

from mediaplane.db import sqlalchemy_url

# Each process imports everything first, says so, then waits for the start signal (a file), so
# the migrations themselves really begin together. Alembic keeps global state: processes, not
# threads, are what containers are.
STARTER = """
import sys, time
from pathlib import Path
from mediaplane.db.migrate import upgrade_to_head
print("ready", flush=True)
go = Path(sys.argv[2])
while not go.exists():
    time.sleep(0.01)
upgrade_to_head(sys.argv[1])
"""


def test_processes_migrating_an_empty_database_at_once_all_succeed(
    empty_database_url: str, tmp_path: Path
) -> None:
    go = tmp_path / "go"
    starters = [
        subprocess.Popen(
            [sys.executable, "-c", STARTER, empty_database_url, str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    try:
        for process in starters:
            assert process.stdout is not None
            assert process.stdout.readline().strip() == "ready"
        go.touch()
        results = [process.communicate(timeout=120) for process in starters]
    finally:
        for process in starters:
            process.kill()
    failures = [err[-1500:] for p, (_, err) in zip(starters, results, strict=True) if p.returncode]
    assert failures == []
    engine = create_engine(sqlalchemy_url(empty_database_url))
    try:
        with engine.connect() as conn:
            versions = conn.execute(text("SELECT version_num FROM alembic_version")).all()
    finally:
        engine.dispose()
    assert len(versions) == 1

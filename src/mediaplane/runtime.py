"""Everything a process needs before serving: the database (embedded or external, migrated) and
the object store, opened from settings in one place and closed in reverse order."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from mediaplane.db import Database, upgrade_to_head
from mediaplane.db.embedded import EmbeddedPostgres
from mediaplane.imaging.budget import configure_decode_budget
from mediaplane.settings import Settings
from mediaplane.startup import StartupError, check_database
from mediaplane.storage import ObjectStore, build_store


@dataclass
class Runtime:
    settings: Settings
    database: Database
    store: ObjectStore


def database_url(settings: Settings, stack: ExitStack) -> str:
    """DATABASE_URL, or the URL of an embedded server started in DATA_DIR/postgres."""
    if settings.database_url:
        return settings.database_url
    pgdata = settings.data_dir / "postgres"
    try:
        return stack.enter_context(EmbeddedPostgres(pgdata))
    except Exception as exc:
        raise StartupError(
            f"cannot start the embedded PostgreSQL in {pgdata}: {exc}",
            *embedded_holder(pgdata),
            f"its log is {pgdata / 'log'}",
        ) from exc


def embedded_holder(pgdata: Path) -> list[str]:
    """Who holds the embedded data directory, when a server's pid file is there."""
    try:
        pid = (pgdata / "postmaster.pid").read_text().split()[0]
    except (OSError, IndexError):
        return []
    return [
        f"the data directory is locked by a PostgreSQL server (pid {pid}) of another instance: "
        "stop that instance, or set MEDIAPLANE_DATA_DIR to another directory"
    ]


@contextmanager
def open_runtime(settings: Settings, *, migrate: bool = True) -> Iterator[Runtime]:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    # One budget per process, shared by the HTTP threads and an in-process worker.
    configure_decode_budget(settings.decode_budget_mb * 1024 * 1024)
    with ExitStack() as stack:
        url = database_url(settings, stack)
        check_database(url)
        if migrate:
            upgrade_to_head(url)
        database = Database(url)
        stack.callback(database.dispose)
        yield Runtime(settings=settings, database=database, store=build_store(settings))

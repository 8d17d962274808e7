"""Everything a process needs before serving: the database (embedded or external, migrated) and
the object store, opened from settings in one place and closed in reverse order."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

from mediaplane.db import Database, upgrade_to_head
from mediaplane.db.embedded import EmbeddedPostgres
from mediaplane.imaging.budget import configure_decode_budget
from mediaplane.settings import Settings
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
    return stack.enter_context(EmbeddedPostgres(settings.data_dir / "postgres"))


@contextmanager
def open_runtime(settings: Settings, *, migrate: bool = True) -> Iterator[Runtime]:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    # One budget per process, shared by the HTTP threads and an in-process worker.
    configure_decode_budget(settings.decode_budget_mb * 1024 * 1024)
    with ExitStack() as stack:
        url = database_url(settings, stack)
        if migrate:
            upgrade_to_head(url)
        database = Database(url)
        stack.callback(database.dispose)
        yield Runtime(settings=settings, database=database, store=build_store(settings))

"""Alembic environment: online migrations only, against the URL given by `alembic_config`."""

from alembic import context
from sqlalchemy import create_engine, pool, text

from mediaplane.db.base import Base, import_all_models

import_all_models()
target_metadata = Base.metadata
config = context.config

# Every process migrates on start (`serve`, `worker`, `migrate`), and containers start together:
# one lock per database makes them take turns; a process that waited finds the schema at head
# and does nothing. Held until the migration transaction ends. The key is arbitrary but fixed.
MIGRATION_LOCK_KEY = 0x6D65_6469_6170_6C61  # "mediapla"


def include_object(obj, name, type_, reflected, compare_to):
    # procrastinate manages its own tables in the same database; they are not our models.
    if type_ == "table" and reflected and compare_to is None:
        return bool(name in target_metadata.tables)
    return True


def run_migrations_online() -> None:
    url = config.get_main_option("sqlalchemy.url")
    assert url, "sqlalchemy.url is not set"
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            include_object=include_object,
            compare_type=True,
        )
        with context.begin_transaction():
            connection.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY}
            )
            context.run_migrations()
    engine.dispose()


run_migrations_online()

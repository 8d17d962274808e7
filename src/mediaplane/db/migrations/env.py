"""Alembic environment: online migrations only, against the URL given by `alembic_config`."""

from alembic import context
from sqlalchemy import create_engine, pool

from mediaplane.db.base import Base, import_all_models

import_all_models()
target_metadata = Base.metadata
config = context.config


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
            context.run_migrations()
    engine.dispose()


run_migrations_online()

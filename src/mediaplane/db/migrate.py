"""Run Alembic migrations from code (`mediaplane migrate`, `serve` on start, tests)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def alembic_config(database_url: str) -> Config:
    from mediaplane.db.engine import sqlalchemy_url

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", sqlalchemy_url(database_url).replace("%", "%%"))
    return config


def upgrade_to_head(database_url: str) -> None:
    """Bring the schema to the newest revision; a no-op when it is already there."""
    command.upgrade(alembic_config(database_url), "head")


def check_models_match(database_url: str) -> None:
    """Fail if the models and the migrations disagree (`alembic check`)."""
    command.check(alembic_config(database_url))

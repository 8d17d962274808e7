"""Schema: the migrations build the database the models describe (`alembic check` in CI)."""

from __future__ import annotations

from sqlalchemy import create_engine, inspect

from mediaplane.db import sqlalchemy_url
from mediaplane.db.migrate import check_models_match


def test_models_and_migrations_agree(database_url: str) -> None:
    # The test database was built by running every migration (the session's template).
    check_models_match(database_url)


def test_migrations_create_every_table_and_the_queue(database_url: str) -> None:
    engine = create_engine(sqlalchemy_url(database_url))
    try:
        tables = set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
    assert {
        "_images_file",
        "rate_limit_counters",
        "consents",
        "uploads",
        "processing_steps",
        "selfie_faces",
        "photo_faces",
        "face_matches",
        "procrastinate_jobs",
    } <= tables

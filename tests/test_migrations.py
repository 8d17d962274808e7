"""Schema: the migrations build the database the models describe (`alembic check` in CI)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from alembic import command
from sqlalchemy import create_engine, inspect, text

from mediaplane.db import sqlalchemy_url
from mediaplane.db.migrate import alembic_config, check_models_match
from tests.conftest import with_database


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
        "projects",
        "project_photographers",
        "project_deletions",
        "match_rejections",
        "procrastinate_jobs",
    } <= tables


def test_existing_projects_get_their_first_uploader_as_owner(pg_server_url: str) -> None:
    """Data written at 0005 (projects were any UUID) still works at 0006: each project id
    found in photo uploads becomes a project owned by its first uploader, every uploader a
    member, and the photos are untouched."""
    name = f"m_{uuid.uuid4().hex[:12]}"
    admin = create_engine(sqlalchemy_url(pg_server_url), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    url = with_database(pg_server_url, name)
    engine = create_engine(sqlalchemy_url(url))
    try:
        config = alembic_config(url)
        command.upgrade(config, "0005")
        gala, wedding = uuid.uuid4(), uuid.uuid4()
        t0 = datetime(2026, 1, 1, tzinfo=UTC)
        rows = [
            (gala, "paula", t0 + timedelta(minutes=2)),
            (gala, "pat", t0),  # first uploader of the gala
            (gala, "pat", t0 + timedelta(minutes=5)),
            (wedding, "paula", t0 + timedelta(minutes=1)),
        ]
        with engine.begin() as conn:
            for project, owner, at in rows:
                conn.execute(
                    text(
                        "INSERT INTO uploads (id, kind, owner_id, project_id, key, content_type,"
                        " max_bytes, status, url_expires_at, created_at)"
                        " VALUES (:id, 'photo', :owner, :project, :key, 'image/jpeg', 100,"
                        " 'uploaded', :at, :at)"
                    ),
                    {"id": uuid.uuid4(), "owner": owner, "project": project, "key": "k", "at": at},
                )
            conn.execute(
                text(
                    "INSERT INTO uploads (id, kind, owner_id, key, content_type, max_bytes,"
                    " status, url_expires_at, created_at) VALUES (:id, 'selfie', 'alice', 's',"
                    " 'image/jpeg', 100, 'uploaded', :at, :at)"
                ),
                {"id": uuid.uuid4(), "at": t0},
            )

        command.upgrade(config, "head")

        with engine.connect() as conn:
            owners = {r[0]: r[1] for r in conn.execute(text("SELECT id, owner_id FROM projects"))}
            members = {
                (r[0], r[1])
                for r in conn.execute(text("SELECT project_id, user_id FROM project_photographers"))
            }
            photos = conn.execute(text("SELECT count(*) FROM uploads")).scalar_one()
        assert owners == {gala: "pat", wedding: "paula"}
        assert members == {(gala, "pat"), (gala, "paula"), (wedding, "paula")}
        assert photos == 5

        command.downgrade(config, "0005")  # and back, for the record
        with engine.connect() as conn:
            assert "projects" not in inspect(conn).get_table_names()
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()

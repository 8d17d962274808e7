"""Listing every store a photo can live in: objects, rows, vectors, queued jobs."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from fastapi import FastAPI
from sqlalchemy import text


@dataclass
class Inventory:
    """What exists of some photos (by id) and of a project, store by store."""

    objects: list[str] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)
    vectors: int = 0
    jobs: int = 0

    @property
    def empty(self) -> bool:
        return (
            not self.objects and not any(self.rows.values()) and not self.vectors and not self.jobs
        )


PHOTO_TABLES = {
    "uploads": "id",
    "processing_steps": "upload_id",
    "photo_faces": "photo_id",
    "face_matches": "photo_id",
    "match_rejections": "photo_id",
}


def inventory(app: FastAPI, *, project: uuid.UUID, photos: list[str]) -> Inventory:
    store = app.state.store
    found = Inventory(objects=sorted(store.list(f"photos/{project}/")))
    ids = [str(p) for p in photos]
    with app.state.db.transaction() as session:
        for table, column in PHOTO_TABLES.items():
            found.rows[table] = session.execute(
                text(f"SELECT count(*) FROM {table} WHERE {column}::text = ANY(:ids)"),
                {"ids": ids},
            ).scalar_one()
        for table in ("photo_faces", "face_matches"):
            found.rows[f"{table} (project)"] = session.execute(
                text(f"SELECT count(*) FROM {table} WHERE project_id = :p"), {"p": project}
            ).scalar_one()
        found.rows["projects"] = session.execute(
            text("SELECT count(*) FROM projects WHERE id = :p"), {"p": project}
        ).scalar_one()
        found.rows["project_photographers"] = session.execute(
            text("SELECT count(*) FROM project_photographers WHERE project_id = :p"),
            {"p": project},
        ).scalar_one()
        found.vectors = session.execute(
            text(
                "SELECT count(*) FROM photo_faces WHERE embedding IS NOT NULL"
                " AND photo_id::text = ANY(:ids)"
            ),
            {"ids": ids},
        ).scalar_one()
        found.jobs = session.execute(
            text(
                "SELECT count(*) FROM procrastinate_jobs WHERE status = 'todo'"
                " AND args->>'upload_id' = ANY(:ids)"
            ),
            {"ids": ids},
        ).scalar_one()
    return found

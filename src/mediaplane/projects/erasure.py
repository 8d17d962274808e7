"""Erasing photos and projects from every store: objects, rows, the face index.

A photo lives in: its objects (original, derivatives, the aside copy, all under
`photos/{projectId}/{photoId}/`), its upload row, its processing steps and their queued jobs
(both removed: a running step finds no row and is skipped), its faces (pgvector rows or
Rekognition faces), its matches and "not me" rejections. `erase_photos` removes them all in
the caller's transaction, the upload rows locked first, so a step finishing meanwhile waits
and then finds the photo gone (jobs/tasks.py removes what it wrote).

One thing may stay, for a while: on S3 a presigned PUT URL works until it expires, whatever we
do. A photo deleted while its URL (plus the sweep grace) could still write keeps a tombstone
row — status `deleted`, nothing but its key and the watch — so the sweeper keeps the key
empty; the sweeper drops the tombstone when the watch ends (uploads/tracker.py).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from mediaplane.db import Database
from mediaplane.faces.index import FaceIndex
from mediaplane.faces.models import FaceMatch, MatchRejection
from mediaplane.faces.service import lock_matching
from mediaplane.jobs import queue
from mediaplane.jobs.models import ProcessingStep
from mediaplane.projects.models import DeletionStatus, Project, ProjectDeletion
from mediaplane.storage import ObjectStore
from mediaplane.uploads import PendingUpload, UploadKind, UploadStatus
from mediaplane.uploads import keys as storage_keys

BATCH = 50


def photo_objects(store: ObjectStore, photo: PendingUpload) -> list[str]:
    """Every object of the photo: original, derivatives, aside copy (one prefix)."""
    assert photo.project_id is not None
    return list(store.list(storage_keys.photo_prefix(photo.project_id, photo.id) + "/"))


def erase_photos(
    session: Session,
    store: ObjectStore,
    index: FaceIndex,
    *,
    photo_ids: list[uuid.UUID],
    now: datetime,
) -> int:
    """Erase photos from every store; returns how many there were."""
    if not photo_ids:
        return 0
    lock_matching(session)  # no match is written for these photos while we erase them
    photos = list(
        session.scalars(
            select(PendingUpload)
            .where(PendingUpload.id.in_(photo_ids), PendingUpload.kind == UploadKind.PHOTO)
            .with_for_update()
        )
    )
    ids = [p.id for p in photos]
    index.forget_photos(session, photo_ids=ids)
    session.execute(delete(FaceMatch).where(FaceMatch.photo_id.in_(ids)))
    session.execute(delete(MatchRejection).where(MatchRejection.photo_id.in_(ids)))
    session.execute(delete(ProcessingStep).where(ProcessingStep.upload_id.in_(ids)))
    queue.cancel_waiting(session, upload_ids=[str(i) for i in ids])
    for photo in photos:
        for key in photo_objects(store, photo):
            store.delete(key)
        if photo.watch_until is not None and photo.watch_until > now:
            _tombstone(photo)
        else:
            session.delete(photo)
    session.flush()
    return len(photos)


def _tombstone(photo: PendingUpload) -> None:
    photo.status = UploadStatus.DELETED
    photo.reason = "deleted"
    photo.size = photo.width = photo.height = None
    photo.derivatives = []
    photo.etag = None
    photo.aside_key = None
    photo.aside_delete_after = None


def next_photo_ids(session: Session, *, project_id: uuid.UUID, limit: int) -> list[uuid.UUID]:
    return list(
        session.scalars(
            select(PendingUpload.id)
            .where(PendingUpload.kind == UploadKind.PHOTO, PendingUpload.project_id == project_id)
            .where(PendingUpload.status != UploadStatus.DELETED)
            .order_by(PendingUpload.created_at, PendingUpload.id)
            .limit(limit)
        )
    )


Progress = Callable[[ProjectDeletion], None]


@dataclass
class ProjectEraser:
    """Erases a project batch by batch, each batch its own transaction, recording progress on
    its `ProjectDeletion` row (read by GET /v1/projects/{id}/deletion and the CLI). Resumable:
    a crashed run is picked up where it stopped."""

    db: Database
    store: ObjectStore
    index: FaceIndex
    batch: int = BATCH

    def run(
        self,
        project_id: uuid.UUID,
        *,
        now: Callable[[], datetime],
        on_progress: Progress | None = None,
    ) -> ProjectDeletion:
        while True:
            with self.db.transaction() as session:
                deletion = session.get(ProjectDeletion, project_id, with_for_update=True)
                if deletion is None:
                    raise LookupError(f"no deletion requested for project {project_id}")
                if deletion.status == DeletionStatus.DONE:
                    return deletion
                deletion.status = DeletionStatus.RUNNING
                ids = next_photo_ids(session, project_id=project_id, limit=self.batch)
                erased = erase_photos(session, self.store, self.index, photo_ids=ids, now=now())
                deletion.photos_erased += erased
                deletion.photos_total = max(deletion.photos_total, deletion.photos_erased)
                if not ids:
                    self._finish(session, deletion, now())
                session.flush()
                if on_progress is not None:
                    on_progress(deletion)
                if not ids:
                    return deletion

    def _finish(self, session: Session, deletion: ProjectDeletion, at: datetime) -> None:
        project_id = deletion.project_id
        # Anything left under the project's prefix (a stray write, an unknown photo id).
        for key in list(self.store.list(f"photos/{project_id}/")):
            self.store.delete(key)
        self.index.forget_project(session, project_id=project_id)
        session.execute(delete(FaceMatch).where(FaceMatch.project_id == project_id))
        session.execute(delete(Project).where(Project.id == project_id))
        deletion.status = DeletionStatus.DONE
        deletion.finished_at = at

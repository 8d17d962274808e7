"""Bystanders' faces: the descriptors of project photos are kept only while the project needs
them.

Every face found in a project photo is stored as a descriptor (pgvector row, or a face in the
project's Rekognition collection) so that an attendee who uploads a selfie later finds their
photos. Most of those faces are bystanders who never will. So the descriptors go:

- with the project: its deletion erases its faces, rows and collection (projects/erasure.py);
- `PHOTO_FACE_RETENTION_DAYS` (default 90) after the project's end: the hourly `expire_selfies`
  task calls `expire_photo_faces`, which erases the descriptors of every project past it.

A project's end is its `endsAt`; a project without one (open mode creates them) ends with its
latest photo upload, so a project nobody closes still loses its descriptors 90 days after its
last photo. What stays: the rows with their boxes (pixels, nothing about who), so photographers
still see where faces are, and the matches already made (attendees who consented and were
found keep their photos). What stops: nobody new is found in the project. A photo processed
after that point (a late upload into an ended project, a reprocess) stores boxes only:
`FaceMatcher.recognize_faces` asks `vectors_expired` first.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ColumnElement, exists, func, or_, select
from sqlalchemy.orm import Session

from mediaplane.faces.index import FaceIndex
from mediaplane.faces.models import PhotoFace
from mediaplane.projects.models import Project
from mediaplane.uploads import PendingUpload, UploadKind


def _project_end() -> ColumnElement[datetime]:
    """`endsAt`, else the project's latest photo upload (NULL: no end and no photo)."""
    last_photo = (
        select(func.max(PendingUpload.created_at))
        .where(PendingUpload.kind == UploadKind.PHOTO, PendingUpload.project_id == Project.id)
        .scalar_subquery()
    )
    return func.coalesce(Project.ends_at, last_photo)


def _has_vectors() -> ColumnElement[bool]:
    return exists().where(
        PhotoFace.project_id == Project.id,
        or_(PhotoFace.embedding.is_not(None), PhotoFace.external_face_id.is_not(None)),
    )


def has_vectors(session: Session, *, project_id: uuid.UUID) -> bool:
    """Whether any photo face of the project still has a descriptor (pgvector or Rekognition)."""
    return bool(session.scalar(select(_has_vectors()).where(Project.id == project_id)))


def vectors_expired(session: Session, *, project_id: uuid.UUID, cutoff: datetime) -> bool:
    """Whether the project ended before `cutoff` (now minus the retention)."""
    end = session.scalar(select(_project_end()).where(Project.id == project_id))
    return end is not None and end < cutoff


def expire_photo_faces(
    session: Session, index: FaceIndex, *, cutoff: datetime, limit: int = 20
) -> dict[uuid.UUID, int]:
    """Erase the photo-face descriptors of up to `limit` projects that ended before `cutoff`;
    returns {project id: faces erased}. Projects already without descriptors are skipped, so
    calling again until it returns {} erases them all."""
    projects = list(
        session.scalars(
            select(Project.id)
            .where(_project_end() < cutoff, _has_vectors())
            .order_by(Project.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    )
    return {p: index.forget_vectors(session, project_id=p) for p in projects}

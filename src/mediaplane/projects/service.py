"""Projects: create, read, change, members, and who may upload into one. No FastAPI here.

`PROJECTS_MODE=open` keeps clients written against the seed working: they never create
projects, so the first photographer to upload to an unknown `projectId` creates it and owns
it. `managed`: only operators create projects. In both modes only members upload.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, and_, delete, exists, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from mediaplane.errors import Conflict, Forbidden, InvalidInput, NotFound
from mediaplane.faces.models import FaceMatch
from mediaplane.projects.models import DeletionStatus, Project, ProjectDeletion, ProjectPhotographer
from mediaplane.uploads import PendingUpload, UploadKind, UploadStatus


def _check_dates(starts_at: datetime | None, ends_at: datetime | None) -> None:
    if starts_at is not None and ends_at is not None and ends_at < starts_at:
        raise InvalidInput("invalid_dates", "endsAt is before startsAt")


def create(
    session: Session,
    *,
    name: str,
    owner_id: str,
    now: datetime,
    starts_at: datetime | None = None,
    ends_at: datetime | None = None,
    photographers: list[str] | None = None,
    project_id: uuid.UUID | None = None,
) -> Project:
    """A new project; `owner_id` is a member when the owner is a photographer (`photographers`
    lists who may upload)."""
    _check_dates(starts_at, ends_at)
    project = Project(
        id=project_id or uuid.uuid4(),
        name=name,
        starts_at=starts_at,
        ends_at=ends_at,
        owner_id=owner_id,
        created_at=now,
    )
    session.add(project)
    session.flush()
    for user_id in photographers or ():
        add_photographer(session, project_id=project.id, user_id=user_id, now=now)
    return project


def get(session: Session, *, project_id: uuid.UUID, lock: bool = False) -> Project:
    query = select(Project).where(Project.id == project_id)
    if lock:
        query = query.with_for_update()
    project = session.scalars(query).one_or_none()
    if project is None:
        raise NotFound("project_not_found", f"no project {project_id}")
    return project


def update(
    session: Session,
    *,
    project: Project,
    name: str | None = None,
    starts_at: datetime | None = None,
    ends_at: datetime | None = None,
    fields: set[str],
) -> Project:
    """Change the fields named in `fields` (a date may be set back to none)."""
    if "name" in fields and name is not None:
        project.name = name
    if "starts_at" in fields:
        project.starts_at = starts_at
    if "ends_at" in fields:
        project.ends_at = ends_at
    _check_dates(project.starts_at, project.ends_at)
    session.flush()
    return project


def photographers(session: Session, *, project_ids: list[uuid.UUID]) -> dict[uuid.UUID, list[str]]:
    rows = session.execute(
        select(ProjectPhotographer.project_id, ProjectPhotographer.user_id)
        .where(ProjectPhotographer.project_id.in_(project_ids))
        .order_by(ProjectPhotographer.added_at, ProjectPhotographer.user_id)
    )
    found: dict[uuid.UUID, list[str]] = {i: [] for i in project_ids}
    for project_id, user_id in rows:
        found[project_id].append(user_id)
    return found


def is_member(session: Session, *, project_id: uuid.UUID, user_id: str) -> bool:
    return session.get(ProjectPhotographer, (project_id, user_id)) is not None


def owner_of(session: Session, *, project_id: uuid.UUID) -> str | None:
    project = session.get(Project, project_id)
    return project.owner_id if project is not None else None


def add_photographer(
    session: Session, *, project_id: uuid.UUID, user_id: str, now: datetime
) -> None:
    session.execute(
        insert(ProjectPhotographer)
        .values(project_id=project_id, user_id=user_id, added_at=now)
        .on_conflict_do_nothing()
    )


def remove_photographer(session: Session, *, project_id: uuid.UUID, user_id: str) -> None:
    """They upload no more; the photos they took stay in the project."""
    session.execute(
        delete(ProjectPhotographer).where(
            ProjectPhotographer.project_id == project_id, ProjectPhotographer.user_id == user_id
        )
    )


def list_all(session: Session) -> list[Project]:
    return list(session.scalars(select(Project).order_by(Project.created_at.desc())))


def list_for_photographer(session: Session, *, user_id: str) -> list[Project]:
    query = (
        select(Project)
        .join(ProjectPhotographer, ProjectPhotographer.project_id == Project.id)
        .where(ProjectPhotographer.user_id == user_id)
        .order_by(Project.created_at.desc())
    )
    return list(session.scalars(query))


@dataclass(frozen=True)
class Appearance:
    """A project an attendee appears in: how many photos, and the newest one (the cover)."""

    project: Project
    matches: int
    cover: PendingUpload


def list_for_attendee(session: Session, *, user_id: str) -> list[Appearance]:
    """Projects with at least one match of the user, newest match first."""
    counts = (
        select(
            FaceMatch.project_id,
            func.count().label("matches"),
            func.max(PendingUpload.created_at).label("newest"),
        )
        .join(PendingUpload, PendingUpload.id == FaceMatch.photo_id)
        .where(FaceMatch.user_id == user_id, PendingUpload.status == UploadStatus.UPLOADED)
        .group_by(FaceMatch.project_id)
        .subquery()
    )
    rows = session.execute(
        select(Project, counts.c.matches)
        .join(counts, counts.c.project_id == Project.id)
        .order_by(counts.c.newest.desc())
    ).all()
    found = []
    for project, matches in rows:
        cover = session.scalars(
            select(PendingUpload)
            .join(FaceMatch, FaceMatch.photo_id == PendingUpload.id)
            .where(FaceMatch.user_id == user_id, FaceMatch.project_id == project.id)
            .where(PendingUpload.status == UploadStatus.UPLOADED)
            .order_by(PendingUpload.created_at.desc(), PendingUpload.id.desc())
            .limit(1)
        ).one()
        found.append(Appearance(project=project, matches=matches, cover=cover))
    return found


def deletion_of(session: Session, *, project_id: uuid.UUID) -> ProjectDeletion | None:
    return session.get(ProjectDeletion, project_id)


def upload_allowed(project_id: object, photographer_id: object) -> ColumnElement[bool]:
    """SQL for where `authorize_upload` lets a photographer through without creating anything:
    a member of the project (which therefore exists), the project not (being) erased. The
    arguments are values or bind parameters. Where it is false, `authorize_upload` says why (or
    creates the project, in open mode)."""
    member = exists().where(
        ProjectPhotographer.project_id == project_id,
        ProjectPhotographer.user_id == photographer_id,
    )
    deleted = exists().where(ProjectDeletion.project_id == project_id)
    return and_(member, ~deleted)


def authorize_upload(
    session: Session, *, mode: str, project_id: uuid.UUID, photographer_id: str, now: datetime
) -> Project:
    """The project a photographer may upload into, created for them in open mode.

    Forbidden `not_a_project_member`; NotFound `project_not_found` (managed mode);
    Conflict `project_deleted` for a project that is (being) erased, open mode included: an
    old client must not bring an erased project back.
    """
    if deletion_of(session, project_id=project_id) is not None:
        raise Conflict("project_deleted", f"project {project_id} is deleted")
    project = session.get(Project, project_id)
    if project is None:
        if mode != "open":
            raise NotFound("project_not_found", f"no project {project_id}")
        # Two first uploads at once: one INSERT wins, the other finds the winner's project.
        session.execute(
            insert(Project)
            .values(
                id=project_id,
                name=f"Project {str(project_id)[:8]}",
                owner_id=photographer_id,
                created_at=now,
            )
            .on_conflict_do_nothing()
        )
        project = session.get(Project, project_id, populate_existing=True)
        assert project is not None
        if project.owner_id == photographer_id:
            add_photographer(session, project_id=project_id, user_id=photographer_id, now=now)
    if not is_member(session, project_id=project_id, user_id=photographer_id):
        raise Forbidden(
            "not_a_project_member", f"you are not a photographer of project {project_id}"
        )
    return project


def photo_count(session: Session, *, project_id: uuid.UUID) -> int:
    return (
        session.scalar(
            select(func.count())
            .select_from(PendingUpload)
            .where(PendingUpload.kind == UploadKind.PHOTO, PendingUpload.project_id == project_id)
            .where(PendingUpload.status != UploadStatus.DELETED)
        )
        or 0
    )


def request_deletion(
    session: Session, *, project: Project, requested_by: str, now: datetime
) -> ProjectDeletion:
    """Record the deletion (its progress row); the erasure job does the work."""
    deletion = ProjectDeletion(
        project_id=project.id,
        requested_by=requested_by,
        requested_at=now,
        status=DeletionStatus.QUEUED,
        photos_total=photo_count(session, project_id=project.id),
        photos_erased=0,
    )
    session.add(deletion)
    session.flush()
    return deletion

"""/v1/projects: projects, their photographers, and their deletion. Thin: parse, authorize,
call a service, shape the answer.

Who may do what: operators (backoffice tokens) everything; a photographer creates projects in
open mode, reads the projects they are a member of, and manages those they own; an attendee
(media user) lists the projects they appear in.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from fastapi import APIRouter, Depends, Request
from sqlalchemy.orm import Session

from mediaplane.auth import AUDIENCE_BACKOFFICE, AUDIENCE_MEDIA, Principal, require_principal
from mediaplane.db import Database
from mediaplane.errors import Forbidden, NotFound
from mediaplane.jobs import queue
from mediaplane.jobs.tasks import ERASE_PROJECT
from mediaplane.media_api.service import download
from mediaplane.projects import service
from mediaplane.projects.models import Project, ProjectDeletion
from mediaplane.projects.schemas import (
    AttendeeProjectView,
    DeletionView,
    ProjectCreate,
    ProjectList,
    ProjectUpdate,
    ProjectView,
)
from mediaplane.settings import Settings
from mediaplane.storage import ObjectStore
from mediaplane.uploads import keys as storage_keys
from mediaplane.web import ProblemRoute

router = APIRouter(prefix="/v1/projects", route_class=ProblemRoute, tags=["projects"])

_any_role = require_principal(
    AUDIENCE_MEDIA, AUDIENCE_BACKOFFICE, roles=["user", "photographer", "operator"]
)
_staff = require_principal(AUDIENCE_MEDIA, AUDIENCE_BACKOFFICE, roles=["photographer", "operator"])
_operator = require_principal(AUDIENCE_BACKOFFICE, roles=["operator"])


def _deps(request: Request) -> tuple[Settings, Database, ObjectStore]:
    state = request.app.state
    return state.settings, state.db, state.store


def is_operator(principal: Principal) -> bool:
    # Operator powers come with backoffice tokens only.
    return principal.audience == AUDIENCE_BACKOFFICE and "operator" in principal.roles


def _is_photographer(principal: Principal) -> bool:
    return "photographer" in principal.roles


def staff(principal: Principal = Depends(_staff)) -> Principal:
    """Photographers (either audience) and operators (backoffice tokens only)."""
    if not _is_photographer(principal) and not is_operator(principal):
        raise Forbidden("insufficient_role", "operators use a backoffice token")
    return principal


def reader(principal: Principal = Depends(_any_role)) -> Principal:
    """Staff, and attendees (media users)."""
    attendee = principal.audience == AUDIENCE_MEDIA and "user" in principal.roles
    if not attendee and not _is_photographer(principal) and not is_operator(principal):
        raise Forbidden("insufficient_role", "operators use a backoffice token")
    return principal


def _view(session: Session, project: Project) -> ProjectView:
    members = service.photographers(session, project_ids=[project.id])[project.id]
    deletion = service.deletion_of(session, project_id=project.id)
    return ProjectView(
        project_id=project.id,
        name=project.name,
        starts_at=project.starts_at,
        ends_at=project.ends_at,
        created_at=project.created_at,
        owner_id=project.owner_id,
        photographers=members,
        deletion=_deletion_view(deletion) if deletion is not None else None,
    )


def _deletion_view(deletion: ProjectDeletion) -> DeletionView:
    return DeletionView(
        project_id=deletion.project_id,
        status=deletion.status,
        photos_total=deletion.photos_total,
        photos_erased=deletion.photos_erased,
        requested_at=deletion.requested_at,
        finished_at=deletion.finished_at,
    )


def _visible(session: Session, principal: Principal, project_id: uuid.UUID) -> Project:
    """The project if the caller may see it; otherwise "not found", as if it did not exist."""
    project = service.get(session, project_id=project_id)
    if is_operator(principal):
        return project
    if _is_photographer(principal) and service.is_member(
        session, project_id=project_id, user_id=principal.subject
    ):
        return project
    raise NotFound("project_not_found", f"no project {project_id}")


def _managed(session: Session, principal: Principal, project_id: uuid.UUID) -> Project:
    """The project if the caller manages it: operators, and its owner."""
    project = _visible(session, principal, project_id)
    if not is_operator(principal) and project.owner_id != principal.subject:
        raise Forbidden("not_project_owner", "only the project's owner or an operator may")
    return project


@router.post("", status_code=201, response_model=ProjectView)
def create_project(
    request: Request, body: ProjectCreate, principal: Principal = Depends(staff)
) -> ProjectView:
    """A new project. Operators; photographers (media tokens) too when PROJECTS_MODE=open,
    and they are its owner and first photographer."""
    settings, db, _ = _deps(request)
    photographers: list[str] = []
    if not is_operator(principal):
        if principal.audience != AUDIENCE_MEDIA:
            raise Forbidden("insufficient_role", "photographers create projects in the app")
        if settings.projects_mode != "open":
            raise Forbidden("projects_managed", "only operators create projects (managed mode)")
        photographers = [principal.subject]
    with db.transaction() as session:
        project = service.create(
            session,
            name=body.name,
            starts_at=body.starts_at,
            ends_at=body.ends_at,
            owner_id=principal.subject,
            photographers=photographers,
            now=datetime.now(UTC),
        )
        return _view(session, project)


@router.get("", response_model=ProjectList)
def list_projects(request: Request, principal: Principal = Depends(reader)) -> ProjectList:
    """Operators: every project; photographers: theirs; attendees: those they appear in, with
    their match count and a preview of their newest photo there."""
    settings, db, store = _deps(request)
    with db.transaction() as session:
        if is_operator(principal) or _is_photographer(principal):
            projects = (
                service.list_all(session)
                if is_operator(principal)
                else service.list_for_photographer(session, user_id=principal.subject)
            )
            return ProjectList(items=[_view(session, p) for p in projects])
        items: list[ProjectView | AttendeeProjectView] = []
        for found in service.list_for_attendee(session, user_id=principal.subject):
            cover = None
            if "thumb-400" in found.cover.derivatives:
                assert found.cover.project_id is not None
                key = storage_keys.derivative_key(
                    found.cover.project_id, found.cover.id, "thumb-400"
                )
                cover = download(store, settings, key)
            items.append(
                AttendeeProjectView(
                    project_id=found.project.id,
                    name=found.project.name,
                    starts_at=found.project.starts_at,
                    ends_at=found.project.ends_at,
                    match_count=found.matches,
                    cover=cover,
                )
            )
        return ProjectList(items=items)


@router.get("/{project_id}", response_model=ProjectView)
def get_project(
    project_id: uuid.UUID, request: Request, principal: Principal = Depends(staff)
) -> ProjectView:
    """A project: operators and its photographers (attendees see theirs in the listing).
    While it is being deleted, `deletion` shows the progress."""
    _, db, _ = _deps(request)
    with db.transaction() as session:
        return _view(session, _visible(session, principal, project_id))


@router.patch("/{project_id}", response_model=ProjectView)
def update_project(
    project_id: uuid.UUID,
    body: ProjectUpdate,
    request: Request,
    principal: Principal = Depends(staff),
) -> ProjectView:
    """Rename it or change its dates: operators and the project's owner."""
    _, db, _ = _deps(request)
    with db.transaction() as session:
        project = _managed(session, principal, project_id)
        service.update(
            session,
            project=project,
            name=body.name,
            starts_at=body.starts_at,
            ends_at=body.ends_at,
            fields=set(body.model_fields_set),
        )
        return _view(session, project)


@router.put("/{project_id}/photographers/{user_id}", response_model=ProjectView)
def add_photographer(
    project_id: uuid.UUID, user_id: str, request: Request, principal: Principal = Depends(staff)
) -> ProjectView:
    """Let a photographer upload into the project (idempotent): operators and the owner."""
    _, db, _ = _deps(request)
    with db.transaction() as session:
        project = _managed(session, principal, project_id)
        service.add_photographer(
            session, project_id=project.id, user_id=user_id, now=datetime.now(UTC)
        )
        return _view(session, project)


@router.delete("/{project_id}/photographers/{user_id}", response_model=ProjectView)
def remove_photographer(
    project_id: uuid.UUID, user_id: str, request: Request, principal: Principal = Depends(staff)
) -> ProjectView:
    """They upload no more (their photos stay): operators and the owner."""
    _, db, _ = _deps(request)
    with db.transaction() as session:
        project = _managed(session, principal, project_id)
        service.remove_photographer(session, project_id=project.id, user_id=user_id)
        return _view(session, project)


@router.delete("/{project_id}", status_code=202, response_model=DeletionView)
def delete_project(
    project_id: uuid.UUID, request: Request, principal: Principal = Depends(_operator)
) -> DeletionView:
    """Erase the project and everything of it (photos, derivatives, faces, matches) by a job;
    `GET /v1/projects/{id}/deletion` follows it. Asking again returns the same deletion."""
    _, db, _ = _deps(request)
    with db.transaction() as session:
        deletion = service.deletion_of(session, project_id=project_id)
        if deletion is None:
            project = service.get(session, project_id=project_id, lock=True)
            deletion = service.request_deletion(
                session, project=project, requested_by=principal.subject, now=datetime.now(UTC)
            )
            queue.defer(
                session,
                task_name=ERASE_PROJECT,
                subject=str(project_id),
                args={"project_id": str(project_id)},
            )
        return _deletion_view(deletion)


@router.get("/{project_id}/deletion", response_model=DeletionView)
def project_deletion(
    project_id: uuid.UUID, request: Request, principal: Principal = Depends(_operator)
) -> DeletionView:
    """Progress of a project's deletion, and its record once done."""
    _, db, _ = _deps(request)
    with db.transaction() as session:
        deletion = service.deletion_of(session, project_id=project_id)
        if deletion is None:
            raise NotFound("deletion_not_found", f"project {project_id} was not deleted")
        return _deletion_view(deletion)

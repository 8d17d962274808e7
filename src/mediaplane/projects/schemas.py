"""Request and response shapes of /v1/projects (camelCase on the wire, like the Media API)."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import ConfigDict, Field
from pydantic.alias_generators import to_camel

from mediaplane.media_api.schemas import CamelModel, Download


class _Strict(CamelModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class ProjectCreate(_Strict):
    name: str = Field(min_length=1, max_length=200)
    starts_at: datetime | None = None
    ends_at: datetime | None = None


class ProjectUpdate(_Strict):
    """Only the fields sent change; `null` clears a date."""

    name: str | None = Field(default=None, min_length=1, max_length=200)
    starts_at: datetime | None = None
    ends_at: datetime | None = None


class DeletionView(CamelModel):
    """The erasure of a project: queued → running → done, with its progress."""

    project_id: uuid.UUID
    status: str
    photos_total: int
    photos_erased: int
    requested_at: datetime
    finished_at: datetime | None


class ProjectView(CamelModel):
    project_id: uuid.UUID
    name: str
    starts_at: datetime | None
    ends_at: datetime | None
    created_at: datetime
    owner_id: str
    photographers: list[str]
    deletion: DeletionView | None = Field(
        default=None, description="Present while the project is being deleted."
    )


class AttendeeProjectView(CamelModel):
    """A project the attendee appears in: how many photos, and a preview of the newest."""

    project_id: uuid.UUID
    name: str
    starts_at: datetime | None
    ends_at: datetime | None
    match_count: int
    cover: Download | None


class ProjectList(CamelModel):
    items: list[ProjectView | AttendeeProjectView]

"""Project tables: a project, its photographers, and the record of its deletion.

A project's photos stay in `uploads` (keyed by `project_id`); its members are the photographers
who may upload into it, its owner (who created it) among them.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import DateTime, ForeignKey, Integer, Text
from sqlalchemy.orm import Mapped, mapped_column

from mediaplane.db.base import Base


class Project(Base):
    __tablename__ = "projects"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(Text, nullable=False)
    starts_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    ends_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Who created it: an operator, or the photographer whose first upload created it (open mode).
    owner_id: Mapped[str] = mapped_column(Text, nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)


class ProjectPhotographer(Base):
    """A photographer who may upload into the project."""

    __tablename__ = "project_photographers"

    project_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[str] = mapped_column(Text, primary_key=True, index=True)
    added_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)


class DeletionStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"


class ProjectDeletion(Base):
    """The erasure of a project: its progress while it runs, and the record that it happened.

    No foreign key: the project's row is gone when this one says `done`. Holds no personal data
    besides who asked.
    """

    __tablename__ = "project_deletions"

    project_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    requested_by: Mapped[str] = mapped_column(Text, nullable=False)
    requested_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    status: Mapped[str] = mapped_column(Text, nullable=False, default=DeletionStatus.QUEUED)
    photos_total: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    photos_erased: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

"""Every presigned upload the Media API hands out, from URL issued to uploaded (or not).

One table serves selfies, project photos and operator profile pictures: they share the whole
life cycle (pending → uploaded | rejected | expired) and only differ in key, limit and follow-up.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import BigInteger, DateTime, Index, Integer, Text, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from mediaplane.db.base import Base


class UploadKind(StrEnum):
    SELFIE = "selfie"
    PHOTO = "photo"
    PROFILE_PICTURE = "profile_picture"


class UploadStatus(StrEnum):
    PENDING = "pending"
    UPLOADED = "uploaded"
    REJECTED = "rejected"
    EXPIRED = "expired"
    # A selfie whose biometric data was erased when consent was revoked (the row stays).
    ERASED = "erased"


class PendingUpload(Base):
    __tablename__ = "uploads"
    __table_args__ = (
        Index("ix_uploads_key", "key"),
        Index("ix_uploads_owner_id_kind_created_at", "owner_id", "kind", "created_at"),
        Index("ix_uploads_project_id_created_at", "project_id", "created_at"),
        # The sweeper's scan: only pending rows, oldest URL first.
        Index(
            "ix_uploads_pending_url_expires_at",
            "url_expires_at",
            postgresql_where=text("status = 'pending'"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    kind: Mapped[str] = mapped_column(Text, nullable=False)
    owner_id: Mapped[str] = mapped_column(Text, nullable=False)
    project_id: Mapped[uuid.UUID | None] = mapped_column()
    key: Mapped[str] = mapped_column(Text, nullable=False)
    content_type: Mapped[str] = mapped_column(Text, nullable=False)
    max_bytes: Mapped[int] = mapped_column(BigInteger, nullable=False)
    status: Mapped[str] = mapped_column(Text, nullable=False, default=UploadStatus.PENDING)
    reason: Mapped[str | None] = mapped_column(Text)
    size: Mapped[int | None] = mapped_column(BigInteger)
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    # Names of derivatives present in storage (`thumb-400`, ...), written by the jobs.
    derivatives: Mapped[list[Any]] = mapped_column(
        JSONB, nullable=False, default=list, server_default=text("'[]'::jsonb")
    )
    url_expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Which signal saw the upload first: storage | webhook | sweeper | client.
    completed_via: Mapped[str | None] = mapped_column(Text)
    # The hand-off to processing; set exactly once, in the transaction that marks it uploaded.
    processing_requested_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

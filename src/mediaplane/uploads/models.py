"""Every presigned upload the Media API hands out, from URL issued to uploaded (or not).

One table serves selfies, project photos and operator profile pictures: they share the whole
life cycle (pending → uploaded | rejected | expired) and only differ in key, limit and follow-up.

A settled upload's URL may outlive it. On S3 (which takes any PUT with a live signature) the row
keeps watching its key until the URL and its grace are over (`watch_until`), serves and
processes an aside copy of the accepted bytes meanwhile (`aside_key`), and tells later writes
apart by the accepted ETag (`etag`). See docs/storage-events.md, "Settled uploads".
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
    # A deleted photo whose URL can still write its key (S3): a tombstone with nothing of the
    # photo but its key, so the sweeper keeps the key empty; removed when the watch ends.
    DELETED = "deleted"


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
        # The sweeper's other scans: keys still writable through an old URL, aside copies due.
        Index(
            "ix_uploads_watch_until",
            "watch_until",
            postgresql_where=text("watch_until IS NOT NULL"),
        ),
        Index(
            "ix_uploads_aside_delete_after",
            "aside_delete_after",
            postgresql_where=text("aside_delete_after IS NOT NULL"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    kind: Mapped[str] = mapped_column(Text, nullable=False)
    owner_id: Mapped[str] = mapped_column(Text, nullable=False)
    project_id: Mapped[uuid.UUID | None] = mapped_column()
    key: Mapped[str] = mapped_column(Text, nullable=False)
    # The type the PUT URL is signed for; once uploaded, the sniffed type of the accepted bytes
    # (what downloads are labelled with, whatever the client claimed).
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
    # ETag of the accepted bytes: a later write to the key has another one.
    etag: Mapped[str | None] = mapped_column(Text)
    # Until when a write through the URL can still arrive (S3 only: URL expiry + sweep grace);
    # NULL when none can (local disk refuses them; or the watch is over).
    watch_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # A copy of the accepted bytes under a key no URL can write; read instead of `key` while
    # `watch_until` is set.
    aside_key: Mapped[str | None] = mapped_column(Text)
    # When the aside copy may be deleted: the last GET URL of it has expired.
    aside_delete_after: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

"""Consent rows: granted, then maybe revoked; never deleted, so the history stays."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import DateTime, Index, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from mediaplane.db.base import Base


class Consent(Base):
    __tablename__ = "consents"
    __table_args__ = (
        Index("ix_consents_user_id_purpose", "user_id", "purpose"),
        # At most one active (not revoked) consent per user and purpose.
        Index(
            "uq_consents_active",
            "user_id",
            "purpose",
            unique=True,
            postgresql_where=text("revoked_at IS NULL"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    user_id: Mapped[str] = mapped_column(Text, nullable=False)
    purpose: Mapped[str] = mapped_column(Text, nullable=False)
    granted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    source: Mapped[str] = mapped_column(Text, nullable=False)

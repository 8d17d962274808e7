"""The `_images_file` table of authgear-images.md (its stray comma fixed, unique per object)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import DateTime, Integer, Text, UniqueConstraint
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from mediaplane.db.base import Base


class ImagesFile(Base):
    """One uploaded image; its bytes are at storage key `{app_id}/{object_id}`."""

    __tablename__ = "_images_file"
    __table_args__ = (UniqueConstraint("app_id", "object_id"),)

    id: Mapped[str] = mapped_column(Text, primary_key=True)
    app_id: Mapped[str] = mapped_column(Text, nullable=False)
    object_id: Mapped[str] = mapped_column(Text, nullable=False)
    size: Mapped[int] = mapped_column(Integer, nullable=False)
    # `metadata` is reserved on declarative classes, hence the attribute name.
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSONB, nullable=False)
    # Authgear stores naive UTC timestamps ("timestamp without time zone"); so do we.
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=False), nullable=False)

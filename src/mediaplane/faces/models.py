"""Face tables: one selfie face per consenting user, the faces of each photo, and matches.

Embeddings are dlib's 128-d descriptors compared by L2 distance (pgvector `<->`, HNSW index).
With the Rekognition engine the vectors stay in AWS: rows carry the collection's face id.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pgvector.sqlalchemy import Vector
from sqlalchemy import DateTime, Float, ForeignKey, Index, Text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from mediaplane.db.base import Base

EMBEDDING_DIMENSIONS = 128


class SelfieFace(Base):
    """The face a user enrolled with their latest selfie (a newer selfie replaces it)."""

    __tablename__ = "selfie_faces"

    user_id: Mapped[str] = mapped_column(Text, primary_key=True)
    selfie_id: Mapped[uuid.UUID] = mapped_column(nullable=False)
    box: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    embedding: Mapped[Any] = mapped_column(Vector(EMBEDDING_DIMENSIONS), nullable=True)
    external_face_id: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)


# The photo faces' HNSW graph (migration 0007): recall@10 ≥ 0.99 at 1M face-like descriptors
# with `faces.index.EF_SEARCH` 200.
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 128


class PhotoFace(Base):
    """A face found in a project photo."""

    __tablename__ = "photo_faces"
    __table_args__ = (
        Index(
            "ix_photo_faces_embedding_hnsw",
            "embedding",
            postgresql_using="hnsw",
            postgresql_ops={"embedding": "vector_l2_ops"},
            # docs/faces.md, "Index at scale: the choice" (migration 0007).
            postgresql_with={"m": HNSW_M, "ef_construction": HNSW_EF_CONSTRUCTION},
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    photo_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("uploads.id", ondelete="CASCADE"), nullable=False, index=True
    )
    project_id: Mapped[uuid.UUID] = mapped_column(nullable=False, index=True)
    box: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    quality: Mapped[float] = mapped_column(Float, nullable=False)
    embedding: Mapped[Any] = mapped_column(Vector(EMBEDDING_DIMENSIONS), nullable=True)
    external_face_id: Mapped[str | None] = mapped_column(Text)


class FaceMatch(Base):
    """A user appears in a photo (their best-matching face there)."""

    __tablename__ = "face_matches"
    __table_args__ = (Index("ix_face_matches_user_id_project_id", "user_id", "project_id"),)

    photo_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("uploads.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[str] = mapped_column(Text, primary_key=True)
    project_id: Mapped[uuid.UUID] = mapped_column(nullable=False)
    photo_face_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("photo_faces.id", ondelete="CASCADE"), nullable=False
    )
    box: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    similarity: Mapped[float] = mapped_column(Float, nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)


class MatchRejection(Base):
    """A user said "not me" about a photo: no match of them in it is recorded again, whatever
    reprocessing finds. Goes with the photo."""

    __tablename__ = "match_rejections"

    user_id: Mapped[str] = mapped_column(Text, primary_key=True)
    photo_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("uploads.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)

"""Faces: pgvector, selfie faces, photo faces (HNSW), matches.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import pgvector.sqlalchemy
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    available = (
        op.get_bind()
        .execute(sa.text("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'"))
        .first()
    )
    if available is None:
        raise RuntimeError(
            "PostgreSQL has no pgvector extension: install it on the server (package "
            "postgresql-NN-pgvector, or an image that ships it) — the embedded server has it"
        )
    op.execute("CREATE EXTENSION IF NOT EXISTS vector")
    op.create_table(
        "selfie_faces",
        sa.Column("user_id", sa.Text(), nullable=False),
        sa.Column("selfie_id", sa.Uuid(), nullable=False),
        sa.Column("box", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("embedding", pgvector.sqlalchemy.Vector(dim=128), nullable=True),
        sa.Column("external_face_id", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_selfie_faces")),
    )
    op.create_table(
        "photo_faces",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("photo_id", sa.Uuid(), nullable=False),
        sa.Column("project_id", sa.Uuid(), nullable=False),
        sa.Column("box", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("quality", sa.Float(), nullable=False),
        sa.Column("embedding", pgvector.sqlalchemy.Vector(dim=128), nullable=True),
        sa.Column("external_face_id", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["photo_id"],
            ["uploads.id"],
            name=op.f("fk_photo_faces_photo_id_uploads"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_photo_faces")),
    )
    op.create_index(
        "ix_photo_faces_embedding_hnsw",
        "photo_faces",
        ["embedding"],
        unique=False,
        postgresql_using="hnsw",
        postgresql_ops={"embedding": "vector_l2_ops"},
    )
    op.create_index(op.f("ix_photo_faces_photo_id"), "photo_faces", ["photo_id"], unique=False)
    op.create_index(op.f("ix_photo_faces_project_id"), "photo_faces", ["project_id"], unique=False)
    op.create_table(
        "face_matches",
        sa.Column("photo_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Text(), nullable=False),
        sa.Column("project_id", sa.Uuid(), nullable=False),
        sa.Column("photo_face_id", sa.Uuid(), nullable=False),
        sa.Column("box", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("similarity", sa.Float(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["photo_face_id"],
            ["photo_faces.id"],
            name=op.f("fk_face_matches_photo_face_id_photo_faces"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["photo_id"],
            ["uploads.id"],
            name=op.f("fk_face_matches_photo_id_uploads"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("photo_id", "user_id", name=op.f("pk_face_matches")),
    )
    op.create_index(
        "ix_face_matches_user_id_project_id",
        "face_matches",
        ["user_id", "project_id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_table("face_matches")
    op.drop_table("photo_faces")
    op.drop_table("selfie_faces")

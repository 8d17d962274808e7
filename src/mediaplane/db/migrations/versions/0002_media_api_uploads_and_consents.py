"""media api uploads and consents

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "consents",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Text(), nullable=False),
        sa.Column("purpose", sa.Text(), nullable=False),
        sa.Column("granted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("source", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_consents")),
    )
    op.create_index("ix_consents_user_id_purpose", "consents", ["user_id", "purpose"], unique=False)
    op.create_index(
        "uq_consents_active",
        "consents",
        ["user_id", "purpose"],
        unique=True,
        postgresql_where=sa.text("revoked_at IS NULL"),
    )
    op.create_table(
        "uploads",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("owner_id", sa.Text(), nullable=False),
        sa.Column("project_id", sa.Uuid(), nullable=True),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("content_type", sa.Text(), nullable=False),
        sa.Column("max_bytes", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("size", sa.BigInteger(), nullable=True),
        sa.Column("width", sa.Integer(), nullable=True),
        sa.Column("height", sa.Integer(), nullable=True),
        sa.Column(
            "derivatives",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'[]'::jsonb"),
            nullable=False,
        ),
        sa.Column("url_expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("completed_via", sa.Text(), nullable=True),
        sa.Column("processing_requested_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_uploads")),
    )
    op.create_index("ix_uploads_key", "uploads", ["key"], unique=False)
    op.create_index(
        "ix_uploads_owner_id_kind_created_at",
        "uploads",
        ["owner_id", "kind", "created_at"],
        unique=False,
    )
    op.create_index(
        "ix_uploads_pending_url_expires_at",
        "uploads",
        ["url_expires_at"],
        unique=False,
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_index(
        "ix_uploads_project_id_created_at", "uploads", ["project_id", "created_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_uploads_project_id_created_at", table_name="uploads")
    op.drop_index(
        "ix_uploads_pending_url_expires_at",
        table_name="uploads",
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.drop_index("ix_uploads_owner_id_kind_created_at", table_name="uploads")
    op.drop_index("ix_uploads_key", table_name="uploads")
    op.drop_table("uploads")
    op.drop_index(
        "uq_consents_active", table_name="consents", postgresql_where=sa.text("revoked_at IS NULL")
    )
    op.drop_index("ix_consents_user_id_purpose", table_name="consents")
    op.drop_table("consents")

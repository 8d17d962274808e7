"""Settled uploads: accepted ETag, write watch and aside copy of uploads.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("uploads", sa.Column("etag", sa.Text(), nullable=True))
    op.add_column("uploads", sa.Column("watch_until", sa.DateTime(timezone=True), nullable=True))
    op.add_column("uploads", sa.Column("aside_key", sa.Text(), nullable=True))
    op.add_column(
        "uploads", sa.Column("aside_delete_after", sa.DateTime(timezone=True), nullable=True)
    )
    op.create_index(
        "ix_uploads_watch_until",
        "uploads",
        ["watch_until"],
        unique=False,
        postgresql_where=sa.text("watch_until IS NOT NULL"),
    )
    op.create_index(
        "ix_uploads_aside_delete_after",
        "uploads",
        ["aside_delete_after"],
        unique=False,
        postgresql_where=sa.text("aside_delete_after IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_uploads_aside_delete_after", table_name="uploads")
    op.drop_index("ix_uploads_watch_until", table_name="uploads")
    op.drop_column("uploads", "aside_delete_after")
    op.drop_column("uploads", "aside_key")
    op.drop_column("uploads", "watch_until")
    op.drop_column("uploads", "etag")

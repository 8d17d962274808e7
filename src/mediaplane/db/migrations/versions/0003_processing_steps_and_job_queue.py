"""Processing steps, and procrastinate's job queue schema in the same database.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23

procrastinate's schema is applied from the installed package (the version pinned in
pyproject.toml). Upgrading procrastinate across a schema change needs its migration SQL in a new
revision here, as its documentation describes.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from procrastinate.schema import SchemaManager

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "processing_steps",
        sa.Column("upload_id", sa.Uuid(), nullable=False),
        sa.Column("step", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("completions", sa.Integer(), nullable=False),
        sa.Column("queued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["upload_id"],
            ["uploads.id"],
            name=op.f("fk_processing_steps_upload_id_uploads"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("upload_id", "step", name=op.f("pk_processing_steps")),
    )
    op.create_index(
        op.f("ix_processing_steps_status"), "processing_steps", ["status"], unique=False
    )
    op.execute(SchemaManager.get_schema())


def downgrade() -> None:
    op.drop_index(op.f("ix_processing_steps_status"), table_name="processing_steps")
    op.drop_table("processing_steps")
    # procrastinate's objects are left in place: dropping them would drop queued work.

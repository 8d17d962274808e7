"""Projects: owners and photographers, deletion records, "not me" rejections.

Every project id already found in photo uploads becomes a project, owned by its first uploader;
every photographer who uploaded into it becomes a member, so existing clients keep working.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "projects",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ends_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("owner_id", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_projects")),
    )
    op.create_table(
        "project_photographers",
        sa.Column("project_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Text(), nullable=False),
        sa.Column("added_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_project_photographers_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("project_id", "user_id", name=op.f("pk_project_photographers")),
    )
    op.create_index(op.f("ix_project_photographers_user_id"), "project_photographers", ["user_id"])
    op.create_table(
        "project_deletions",
        sa.Column("project_id", sa.Uuid(), nullable=False),
        sa.Column("requested_by", sa.Text(), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("photos_total", sa.Integer(), nullable=False),
        sa.Column("photos_erased", sa.Integer(), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("project_id", name=op.f("pk_project_deletions")),
    )
    op.create_table(
        "match_rejections",
        sa.Column("user_id", sa.Text(), nullable=False),
        sa.Column("photo_id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["photo_id"],
            ["uploads.id"],
            name=op.f("fk_match_rejections_photo_id_uploads"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("user_id", "photo_id", name=op.f("pk_match_rejections")),
    )
    op.create_index(op.f("ix_match_rejections_photo_id"), "match_rejections", ["photo_id"])
    # Existing projects: the first uploader owns it, every uploader stays a member.
    op.execute(
        """
        INSERT INTO projects (id, name, owner_id, created_at)
        SELECT DISTINCT ON (project_id)
               project_id, 'Project ' || left(project_id::text, 8), owner_id, created_at
        FROM uploads
        WHERE kind = 'photo' AND project_id IS NOT NULL
        ORDER BY project_id, created_at, id
        """
    )
    op.execute(
        """
        INSERT INTO project_photographers (project_id, user_id, added_at)
        SELECT project_id, owner_id, min(created_at)
        FROM uploads
        WHERE kind = 'photo' AND project_id IS NOT NULL
        GROUP BY project_id, owner_id
        """
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_match_rejections_photo_id"), table_name="match_rejections")
    op.drop_table("match_rejections")
    op.drop_table("project_deletions")
    op.drop_index(op.f("ix_project_photographers_user_id"), table_name="project_photographers")
    op.drop_table("project_photographers")
    op.drop_table("projects")

"""Photo faces: a denser HNSW graph (m 32, ef_construction 128; was pgvector's 16 / 64).

Measured on face-like descriptors at 1M (docs/faces.md, "Index at scale: the choice"): recall@10
against exact search 0.992 at ef_search 200 (p99 12.8 ms), where the old graph reached 0.865
(0.905 at ef_search 400). Rebuilding the index reads every row: ~13.5 min for 1M faces on two
cores (the table takes no writes meanwhile); an empty or small table takes no time.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = "ix_photo_faces_embedding_hnsw"


def _build(m: int, ef_construction: int) -> None:
    op.drop_index(INDEX, table_name="photo_faces")
    op.create_index(
        INDEX,
        "photo_faces",
        ["embedding"],
        unique=False,
        postgresql_using="hnsw",
        postgresql_ops={"embedding": "vector_l2_ops"},
        postgresql_with={"m": m, "ef_construction": ef_construction},
    )


def upgrade() -> None:
    _build(32, 128)


def downgrade() -> None:
    _build(16, 64)

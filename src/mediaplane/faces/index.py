"""The `FaceIndex` protocol: where face descriptors live and how they are searched.

`PgvectorIndex` (local engine) keeps dlib descriptors in PostgreSQL and searches them with
pgvector's HNSW index; `RekognitionIndex` (faces/rekognition.py) keeps them in Rekognition
collections. The matching service (faces/service.py) only talks to this protocol.
All methods run inside the caller's transaction; they add and flush.
"""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import delete, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from mediaplane.faces.engine import DetectedFace, distance_from_similarity, similarity_from_distance
from mediaplane.faces.models import PhotoFace, SelfieFace
from mediaplane.settings import Settings


@dataclass(frozen=True)
class Candidate:
    """A photo face close enough to a user's selfie face."""

    photo_id: uuid.UUID
    project_id: uuid.UUID
    photo_face_id: uuid.UUID
    user_id: str
    similarity: float
    box: dict[str, Any]


class FaceIndex(Protocol):
    def enroll(
        self,
        session: Session,
        *,
        user_id: str,
        selfie_id: uuid.UUID,
        face: DetectedFace,
        image: bytes,
        now: datetime,
    ) -> None:
        """Make `face` the user's one selfie face (replacing an older one)."""
        ...

    def add_photo(
        self,
        session: Session,
        *,
        photo_id: uuid.UUID,
        project_id: uuid.UUID,
        faces: list[DetectedFace],
        image: bytes,
    ) -> None:
        """Store the faces of a photo, replacing what an earlier run stored."""
        ...

    def candidates_for_user(
        self, session: Session, *, user_id: str, threshold: float
    ) -> list[Candidate]:
        """Photo faces matching the user's selfie face at `threshold` similarity or more."""
        ...

    def candidates_for_photo(
        self, session: Session, *, photo_id: uuid.UUID, threshold: float
    ) -> list[Candidate]:
        """Selfie faces (any user) matching a face of the photo; consent is checked by the
        caller."""
        ...

    def forget_user(self, session: Session, *, user_id: str) -> None:
        """Erase the user's selfie face."""
        ...

    def forget_photos(self, session: Session, *, photo_ids: list[uuid.UUID]) -> None:
        """Erase the faces of these photos (deleted photos)."""
        ...

    def forget_project(self, session: Session, *, project_id: uuid.UUID) -> None:
        """Erase whatever is left of a deleted project's faces (its collection)."""
        ...

    def forget_vectors(self, session: Session, *, project_id: uuid.UUID) -> int:
        """Erase the descriptors of a project's photo faces (past retention, faces/retention.py),
        keeping their rows and boxes: nobody can be found in the project any more, what was
        found stays. Returns how many faces lost their descriptor."""
        ...


def box_json(face: DetectedFace) -> dict[str, Any]:
    return asdict(face.box)


# How many nearest faces one search reads before the threshold filter. Matching photos of one
# person in an event stay far below this; the HNSW scan keeps going past filtered rows
# (iterative scan), so the limit is a cap, not a recall cliff.
SEARCH_LIMIT = 1000


class PgvectorIndex:
    """Descriptors in PostgreSQL: `selfie_faces` and `photo_faces`, searched by L2 distance."""

    def enroll(
        self,
        session: Session,
        *,
        user_id: str,
        selfie_id: uuid.UUID,
        face: DetectedFace,
        image: bytes,
        now: datetime,
    ) -> None:
        values = {
            "user_id": user_id,
            "selfie_id": selfie_id,
            "box": box_json(face),
            "embedding": list(face.embedding or ()),
            "created_at": now,
        }
        statement = insert(SelfieFace).values(**values)
        statement = statement.on_conflict_do_update(
            index_elements=["user_id"],
            set_={k: v for k, v in values.items() if k != "user_id"},
        )
        session.execute(statement)

    def add_photo(
        self,
        session: Session,
        *,
        photo_id: uuid.UUID,
        project_id: uuid.UUID,
        faces: list[DetectedFace],
        image: bytes,
    ) -> None:
        session.execute(delete(PhotoFace).where(PhotoFace.photo_id == photo_id))
        for face in faces:
            session.add(
                PhotoFace(
                    photo_id=photo_id,
                    project_id=project_id,
                    box=box_json(face),
                    quality=face.quality,
                    embedding=list(face.embedding or ()),
                )
            )
        session.flush()

    def candidates_for_user(
        self, session: Session, *, user_id: str, threshold: float
    ) -> list[Candidate]:
        selfie = session.get(SelfieFace, user_id)
        if selfie is None or selfie.embedding is None:
            return []
        _iterative_scan(session)
        rows = session.execute(
            text(
                """
                SELECT * FROM (
                  SELECT id, photo_id, project_id, box, embedding <-> CAST(:v AS vector) AS d
                  FROM photo_faces WHERE embedding IS NOT NULL
                  ORDER BY embedding <-> CAST(:v AS vector) LIMIT :limit
                ) near WHERE d <= :max_distance
                """
            ),
            {
                "v": _vector_text(selfie.embedding),
                "limit": SEARCH_LIMIT,
                "max_distance": distance_from_similarity(threshold),
            },
        ).all()
        return [
            Candidate(
                photo_id=r.photo_id,
                project_id=r.project_id,
                photo_face_id=r.id,
                user_id=user_id,
                similarity=similarity_from_distance(r.d),
                box=r.box,
            )
            for r in rows
        ]

    def candidates_for_photo(
        self, session: Session, *, photo_id: uuid.UUID, threshold: float
    ) -> list[Candidate]:
        faces = session.scalars(select(PhotoFace).where(PhotoFace.photo_id == photo_id)).all()
        found: list[Candidate] = []
        _iterative_scan(session)
        for face in faces:
            if face.embedding is None:
                continue
            rows = session.execute(
                text(
                    """
                    SELECT * FROM (
                      SELECT user_id, embedding <-> CAST(:v AS vector) AS d FROM selfie_faces
                      WHERE embedding IS NOT NULL
                      ORDER BY embedding <-> CAST(:v AS vector) LIMIT :limit
                    ) near WHERE d <= :max_distance
                    """
                ),
                {
                    "v": _vector_text(face.embedding),
                    "limit": SEARCH_LIMIT,
                    "max_distance": distance_from_similarity(threshold),
                },
            ).all()
            found += [
                Candidate(
                    photo_id=photo_id,
                    project_id=face.project_id,
                    photo_face_id=face.id,
                    user_id=r.user_id,
                    similarity=similarity_from_distance(r.d),
                    box=face.box,
                )
                for r in rows
            ]
        return found

    def forget_user(self, session: Session, *, user_id: str) -> None:
        session.execute(delete(SelfieFace).where(SelfieFace.user_id == user_id))

    def forget_photos(self, session: Session, *, photo_ids: list[uuid.UUID]) -> None:
        session.execute(delete(PhotoFace).where(PhotoFace.photo_id.in_(photo_ids)))

    def forget_project(self, session: Session, *, project_id: uuid.UUID) -> None:
        session.execute(delete(PhotoFace).where(PhotoFace.project_id == project_id))

    def forget_vectors(self, session: Session, *, project_id: uuid.UUID) -> int:
        result = session.execute(
            update(PhotoFace)
            .where(PhotoFace.project_id == project_id, PhotoFace.embedding.is_not(None))
            .values(embedding=None)
        )
        return int(getattr(result, "rowcount", 0) or 0)


def build_index(settings: Settings) -> FaceIndex:
    """Where the configured engine keeps faces: Rekognition collections, else PostgreSQL."""
    if settings.face_engine == "rekognition":
        from mediaplane.faces.rekognition import RekognitionIndex

        return RekognitionIndex.from_settings(settings)
    return PgvectorIndex()


# HNSW candidate list per search (pgvector's default is 40). On 1M face-like descriptors
# (bench/faces.py --face-like 1000000 --interleaved; docs/faces.md "Index at scale: the choice")
# with the index's m 32 / ef_construction 128, recall@10 against exact search was 0.980 at 100,
# 0.992 at 200 and 0.997 at 400, p99 7.2 / 12.8 / 24 ms on a quiet 2-core machine.
EF_SEARCH = 200


def _iterative_scan(session: Session) -> None:
    # pgvector ≥ 0.8: keep scanning the HNSW graph when rows are filtered out afterwards.
    session.execute(text("SET LOCAL hnsw.iterative_scan = relaxed_order"))
    session.execute(text(f"SET LOCAL hnsw.ef_search = {EF_SEARCH}"))


def _vector_text(embedding: Any) -> str:
    return "[" + ",".join(f"{float(x):.8g}" for x in embedding) + "]"

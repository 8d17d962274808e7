"""Matching selfies and photos, with consent checked where the data is written, and erasure.

Order independence: a selfie searches the photo faces already stored, a photo searches the
selfie faces already stored, and both write matches under one transaction-scoped advisory
lock. Two transactions running at once (a selfie and a photo of the same person) are thereby
serialized: whichever commits second sees the other's faces, so the same matches result in
any order, with any number of workers.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, exists, select, text, tuple_, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from mediaplane.consent import Purpose, has_active
from mediaplane.errors import InvalidInput
from mediaplane.faces.engine import DetectedFace, FaceEngine
from mediaplane.faces.index import Candidate, FaceIndex, box_json
from mediaplane.faces.matching import Exclusions, assign
from mediaplane.faces.models import FaceMatch, MatchRejection, PhotoFace, SelfieFace
from mediaplane.faces.retention import has_vectors, vectors_expired
from mediaplane.imaging import Original
from mediaplane.storage import ObjectStore
from mediaplane.uploads import PendingUpload, UploadKind, UploadStatus
from mediaplane.uploads.service import accepted_key

# Any constant shared by every process: the key of the matching lock.
_MATCHING_LOCK = 0x6D70_6661_6365  # "mpface"


# A selfie is enrolled with its largest face. Another face counts (`multiple_faces`: whose
# selfie is it?) only when it is at least this fraction of that face's width: a selfie taken at
# an event has people behind, and the detector finds faces from 50 px. Faces less than half as
# wide are bystanders (docs/faces.md, "Selfies").
SECOND_FACE_RATIO = 0.5


class SelfieRejected(InvalidInput):
    """reason: `no_face` or `multiple_faces` — shown to the user on GET /v1/me/selfie."""


def _lock_matching(session: Session) -> None:
    session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MATCHING_LOCK})


def _record(session: Session, candidates: list[Candidate], now: datetime) -> int:
    """Upsert matches already assigned (one face per user and photo, one user per face) from
    candidates without a rejected ("not me") pair: both callers filter before assigning."""
    for c in candidates:
        statement = insert(FaceMatch).values(
            photo_id=c.photo_id,
            user_id=c.user_id,
            project_id=c.project_id,
            photo_face_id=c.photo_face_id,
            box=c.box,
            similarity=c.similarity,
            created_at=now,
        )
        statement = statement.on_conflict_do_update(
            index_elements=["photo_id", "user_id"],
            set_={
                "photo_face_id": statement.excluded.photo_face_id,
                "box": statement.excluded.box,
                "similarity": statement.excluded.similarity,
            },
            where=FaceMatch.similarity < statement.excluded.similarity,
        )
        session.execute(statement)
    return len(candidates)


def _reassign_photos(
    session: Session, found: list[Candidate], *, excluded: Exclusions
) -> list[Candidate]:
    """A new selfie's candidates joined with the matches already in the photos they touch,
    assigned by the rules (faces/matching.py). Other users' matches that lose their face are
    deleted; the returned ones (the new user's) are to be recorded.

    Known limit: a user whose face the newcomer takes (a closer pair) loses that photo rather
    than falling back to another face of theirs there, which the index was not asked for;
    reprocessing the photo gives the full assignment.
    """
    # A rejected pair never takes part: it must not take a face from someone else either.
    found = _not_rejected(session, found)
    photo_ids = {c.photo_id for c in found}
    if not photo_ids:
        return []
    existing = session.scalars(select(FaceMatch).where(FaceMatch.photo_id.in_(photo_ids))).all()
    current = [
        Candidate(
            photo_id=m.photo_id,
            project_id=m.project_id,
            photo_face_id=m.photo_face_id,
            user_id=m.user_id,
            similarity=m.similarity,
            box=m.box,
        )
        for m in existing
    ]
    kept = assign([*current, *found], excluded=excluded)
    still = {(c.photo_id, c.user_id, c.photo_face_id) for c in kept}
    for match in existing:
        if (match.photo_id, match.user_id, match.photo_face_id) not in still:
            session.delete(match)
    session.flush()
    return [c for c in kept if c.user_id in {f.user_id for f in found}]


# Erasing photos (projects/erasure.py) takes the same lock: no match is written for them meanwhile.
lock_matching = _lock_matching


def _not_rejected(session: Session, candidates: list[Candidate]) -> list[Candidate]:
    if not candidates:
        return candidates
    pairs = {(c.user_id, c.photo_id) for c in candidates}
    rejected = {
        (row[0], row[1])
        for row in session.execute(
            select(MatchRejection.user_id, MatchRejection.photo_id).where(
                tuple_(MatchRejection.user_id, MatchRejection.photo_id).in_(pairs)
            )
        )
    }
    return [c for c in candidates if (c.user_id, c.photo_id) not in rejected]


def reject_match(session: Session, *, user_id: str, photo_id: uuid.UUID, now: datetime) -> bool:
    """ "Not me": drop the user's match in the photo and keep it from coming back. False when
    there was no match to reject."""
    _lock_matching(session)
    removed = session.execute(
        delete(FaceMatch).where(FaceMatch.user_id == user_id, FaceMatch.photo_id == photo_id)
    )
    if not getattr(removed, "rowcount", 0):
        return False
    session.execute(
        insert(MatchRejection)
        .values(user_id=user_id, photo_id=photo_id, created_at=now)
        .on_conflict_do_nothing()
    )
    return True


@dataclass
class FaceMatcher:
    engine: FaceEngine
    index: FaceIndex
    threshold: float
    # (photo face id, user id) pairs that never match: "not me" answers, once they are stored.
    excluded: Exclusions = frozenset()
    # PHOTO_FACE_RETENTION_DAYS: a photo of a project ended longer ago keeps boxes only.
    photo_face_retention_days: int | None = None

    def process_selfie(
        self, session_factory: Any, store: ObjectStore, selfie: PendingUpload
    ) -> dict[str, object]:
        """Enroll the user's face (exactly one required) and find their photos so far."""
        user_id = selfie.owner_id
        with session_factory() as session:
            if not has_active(session, user_id=user_id, purpose=Purpose.BIOMETRIC_PROCESSING):
                return {"faces": "no_consent"}  # revoked before we ran: nothing is processed
        image = store.read(accepted_key(selfie))
        faces = self.engine.detect(image)
        if not faces:
            raise SelfieRejected("no_face", "no face was found in the selfie")
        others = [f for f in faces[1:] if f.box.width >= SECOND_FACE_RATIO * faces[0].box.width]
        if others:
            count = 1 + len(others)
            raise SelfieRejected("multiple_faces", f"{count} faces in the selfie; one needed")
        now = datetime.now(UTC)
        with session_factory() as session:
            _lock_matching(session)
            # Consent again, locked: a revocation waits for us, or we see it and write nothing.
            if not has_active(
                session, user_id=user_id, purpose=Purpose.BIOMETRIC_PROCESSING, lock=True
            ):
                return {"faces": "no_consent"}
            current = session.get(SelfieFace, user_id)
            if current is not None and _newer(session, current.selfie_id, than=selfie):
                return {"faces": "superseded"}
            self.index.enroll(
                session, user_id=user_id, selfie_id=selfie.id, face=faces[0], image=image, now=now
            )
            session.execute(delete(FaceMatch).where(FaceMatch.user_id == user_id))
            found = self.index.candidates_for_user(
                session, user_id=user_id, threshold=self.threshold
            )
            kept = _reassign_photos(session, found, excluded=self.excluded)
            return {"faces": "indexed", "matches": _record(session, kept, now)}

    def recognize_faces(
        self, session_factory: Any, original: Original, photo: PendingUpload
    ) -> dict[str, object]:
        """Store every face of the photo and match them against consenting users' selfies.
        `original` is the photo's accepted bytes (it may share one decode with other steps)."""
        assert photo.project_id is not None
        faces = self.engine.detect(original)
        now = datetime.now(UTC)
        with session_factory() as session:
            _lock_matching(session)
            current = session.get(PendingUpload, photo.id)
            if current is None or current.status != UploadStatus.UPLOADED:
                return {"faces": "deleted"}  # deleted while we looked: store nothing of it
            if self._past_retention(session, photo.project_id, now):
                return {
                    "faces": len(faces),
                    "matches": 0,
                    "vectors": self._boxes_only(session, photo, faces),
                }
            self.index.add_photo(
                session,
                photo_id=photo.id,
                project_id=photo.project_id,
                faces=faces,
                image=original.as_bytes(),
            )
            session.execute(delete(FaceMatch).where(FaceMatch.photo_id == photo.id))
            found = [
                c
                for c in self.index.candidates_for_photo(
                    session, photo_id=photo.id, threshold=self.threshold
                )
                if has_active(session, user_id=c.user_id, purpose=Purpose.BIOMETRIC_PROCESSING)
            ]
            kept = assign(_not_rejected(session, found), excluded=self.excluded)
            return {"faces": len(faces), "matches": _record(session, kept, now)}

    def _past_retention(self, session: Session, project_id: uuid.UUID, now: datetime) -> bool:
        days = self.photo_face_retention_days
        if days is None:
            return False
        cutoff = now - timedelta(days=days)
        return vectors_expired(session, project_id=project_id, cutoff=cutoff)

    def _boxes_only(self, session: Session, photo: PendingUpload, faces: list[DetectedFace]) -> str:
        """The photo's project is past retention: where its faces are, not who they are. Rows a
        first run stored (and the matches made then) stay; the project's descriptors go."""
        assert photo.project_id is not None
        if not session.scalar(select(exists().where(PhotoFace.photo_id == photo.id))):
            session.add_all(
                PhotoFace(
                    photo_id=photo.id,
                    project_id=photo.project_id,
                    box=box_json(face),
                    quality=face.quality,
                    embedding=None,
                )
                for face in faces
            )
        if has_vectors(session, project_id=photo.project_id):  # the hourly job has not run yet
            self.index.forget_vectors(session, project_id=photo.project_id)
        return "expired"


def _newer(session: Session, selfie_id: uuid.UUID, *, than: PendingUpload) -> bool:
    enrolled = session.get(PendingUpload, selfie_id)
    return enrolled is not None and enrolled.created_at > than.created_at


def erase_user(session: Session, store: ObjectStore, index: FaceIndex, *, user_id: str) -> int:
    """Erase a user's biometric data: selfie face, matches, selfie objects. Returns the number
    of objects deleted. Upload rows stay (what happened), marked `erased`."""
    _lock_matching(session)
    index.forget_user(session, user_id=user_id)
    session.execute(delete(FaceMatch).where(FaceMatch.user_id == user_id))
    session.execute(
        update(PendingUpload)
        .where(PendingUpload.owner_id == user_id, PendingUpload.kind == UploadKind.SELFIE)
        .where(PendingUpload.status.in_([UploadStatus.PENDING, UploadStatus.UPLOADED]))
        .values(status=UploadStatus.ERASED, reason="biometric data erased")
    )
    deleted = 0
    for key in list(store.list(f"selfies/{user_id}/")):
        store.delete(key)
        deleted += 1
    session.flush()
    return deleted


def matches_of(
    session: Session, *, user_id: str, project_id: uuid.UUID
) -> list[tuple[FaceMatch, PendingUpload]]:
    """The user's matches in a project with their photos, newest photo first."""
    query = (
        select(FaceMatch, PendingUpload)
        .join(PendingUpload, PendingUpload.id == FaceMatch.photo_id)
        .where(FaceMatch.user_id == user_id, FaceMatch.project_id == project_id)
        .order_by(PendingUpload.created_at.desc(), PendingUpload.id.desc())
    )
    return [(m, p) for m, p in session.execute(query)]


def boxes_of(
    session: Session, *, photo_ids: list[uuid.UUID]
) -> dict[uuid.UUID, list[dict[str, int]]]:
    """The face boxes of each photo, largest first, as {x, y, width, height} in pixels of the
    upright original; photos without faces are left out."""
    if not photo_ids:
        return {}
    rows = session.execute(
        select(PhotoFace.photo_id, PhotoFace.box).where(PhotoFace.photo_id.in_(photo_ids))
    )
    found: dict[uuid.UUID, list[dict[str, int]]] = {}
    for photo_id, box in rows:
        found.setdefault(photo_id, []).append(
            {"x": box["left"], "y": box["top"], "width": box["width"], "height": box["height"]}
        )
    for boxes in found.values():
        boxes.sort(key=lambda b: (-b["width"] * b["height"], b["y"], b["x"]))
    return found

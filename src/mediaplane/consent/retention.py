"""The retention schedule of biometric data: selfies and face vectors older than
`SELFIE_RETENTION_DAYS` are erased by a periodic job (`expire_selfies`, jobs/tasks.py).

A selfie past retention loses its objects (the key and any aside copy) and is marked `erased`
(reason `retention`); when it is the one the user is enrolled with, their face vector (pgvector
row or Rekognition face) and their matches go too. Consent stays as it is: the user may upload
a new selfie to be found again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from mediaplane.faces.index import FaceIndex
from mediaplane.faces.models import FaceMatch, SelfieFace
from mediaplane.faces.service import lock_matching
from mediaplane.storage import ObjectStore
from mediaplane.uploads import PendingUpload, UploadKind, UploadStatus


@dataclass
class RetentionReport:
    selfies: int = 0
    faces: int = 0


def expire_selfies(
    session: Session, store: ObjectStore, index: FaceIndex, *, cutoff: datetime, limit: int = 500
) -> RetentionReport:
    """Erase selfies created before `cutoff` (and the face enrolled from one)."""
    report = RetentionReport()
    lock_matching(session)
    old = list(
        session.scalars(
            select(PendingUpload)
            .where(PendingUpload.kind == UploadKind.SELFIE, PendingUpload.created_at < cutoff)
            .where(PendingUpload.status.in_([UploadStatus.PENDING, UploadStatus.UPLOADED]))
            .order_by(PendingUpload.created_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    )
    for selfie in old:
        enrolled = session.get(SelfieFace, selfie.owner_id)
        if enrolled is not None and enrolled.selfie_id == selfie.id:
            index.forget_user(session, user_id=selfie.owner_id)
            session.execute(delete(FaceMatch).where(FaceMatch.user_id == selfie.owner_id))
            report.faces += 1
        for key in (selfie.key, selfie.aside_key):
            if key is not None:
                store.delete(key)
        selfie.status = UploadStatus.ERASED
        selfie.reason = "retention"
        selfie.aside_key = None
        selfie.aside_delete_after = None
        report.selfies += 1
    session.flush()
    return report

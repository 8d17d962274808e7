"""`UploadTracker`: where every upload signal lands; each signal gets its own transaction.

Signals: a local PUT asking to write (`admit_write`, `publish_write`: the storage route's write
gate) and reporting it, bucket events, the client's `complete`, the sweeper. A signal about a
settled upload's key undoes whatever a late write left there (`undo_late_write`).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session

from mediaplane.db import Database
from mediaplane.imaging import ImageLimits
from mediaplane.settings import Settings
from mediaplane.storage import ObjectInfo, ObjectStore
from mediaplane.uploads import service
from mediaplane.uploads.models import PendingUpload, UploadStatus
from mediaplane.uploads.service import HandOff, Signal

log = logging.getLogger(__name__)


@dataclass
class SweepReport:
    checked: int = 0
    settled: int = 0
    expired: int = 0
    undone: int = 0  # late writes to settled keys put back
    released: int = 0  # watches ended and aside copies deleted


@dataclass
class UploadTracker:
    db: Database
    store: ObjectStore
    settings: Settings
    hand_off: list[HandOff] = field(default_factory=list)

    @property
    def limits(self) -> ImageLimits:
        return ImageLimits(
            max_pixels=self.settings.max_image_pixels, max_bytes=self.settings.images_max_bytes
        )

    def notice_key(self, key: str, *, via: Signal) -> bool:
        """An object was written at `key`: settle the upload waiting for it, if any."""
        now = datetime.now(UTC)
        with self.db.transaction() as session:
            for upload in service.lock_by_key(session, key=key):
                notice = service.notice(
                    session,
                    self.store,
                    upload=upload,
                    via=via,
                    now=now,
                    limits=self.limits,
                    hand_off=self.hand_off,
                )
                if notice.changed:
                    log.info("upload %s settled as %s via %s", upload.id, upload.status, via)
                return notice.changed
            self._undo_late_write(session, key, via=via)
        return False

    def admit_write(self, key: str) -> int:
        """Write gate of the local storage route: the byte limit of a write to `key`, or
        `Conflict` (`upload_already_settled`) / `NotFound` (`upload_not_found`)."""
        with self.db.transaction() as session:
            return service.admit_write(session, key=key)

    def publish_write(self, key: str, publish: Callable[[], ObjectInfo]) -> ObjectInfo:
        """Publish a local write only if `key` still takes it, holding its uploads' rows
        meanwhile: a signal settling the upload waits, so nothing lands after settlement."""
        with self.db.transaction() as session:
            service.admit_write(session, key=key, lock=True)
            return publish()

    def refuse_write(self, key: str, *, reason: str, size: int) -> None:
        """A local write to `key` brought bytes that are not an image: its upload is rejected."""
        with self.db.transaction() as session:
            service.refuse_write(
                session, self.store, key=key, reason=reason, size=size, now=datetime.now(UTC)
            )

    def _undo_late_write(self, session: Session, key: str, *, via: Signal | str) -> bool:
        outcome = service.undo_late_write(session, self.store, key=key)
        if outcome is not None:
            log.warning("late write to the settled key %s %s (noticed via %s)", key, outcome, via)
        return outcome is not None

    def notice_keys(self, keys: Iterable[str], *, via: Signal) -> int:
        return sum(1 for key in keys if self.notice_key(key, via=via))

    def notice_id(self, upload_id: uuid.UUID, *, via: Signal) -> PendingUpload | None:
        """Settle one upload by id if its object is there; return it as it ends up."""
        with self.db.transaction() as session:
            upload = service.get(session, upload_id=upload_id, lock=True)
            if upload is None:
                return None
            service.notice(
                session,
                self.store,
                upload=upload,
                via=via,
                now=datetime.now(UTC),
                limits=self.limits,
                hand_off=self.hand_off,
            )
            return upload

    def sweep(self, *, batch: int = 500) -> SweepReport:
        """HEAD every pending upload: settle those that arrived, expire those that never will."""
        report = SweepReport()
        grace = timedelta(seconds=self.settings.upload_sweep_grace_seconds)
        with self.db.transaction() as session:
            ids = service.pending_ids(session, limit=batch)
        for upload_id in ids:
            with self.db.transaction() as session:
                upload = service.get(session, upload_id=upload_id, lock=True)
                if upload is None:
                    continue
                report.checked += 1
                now = datetime.now(UTC)
                notice = service.notice(
                    session,
                    self.store,
                    upload=upload,
                    via=Signal.SWEEPER,
                    now=now,
                    limits=self.limits,
                    hand_off=self.hand_off,
                )
                if notice.changed:
                    report.settled += 1
                elif service.expire_if_absent(self.store, upload=upload, now=now, grace=grace):
                    report.expired += 1
        self._sweep_settled(report, batch=batch)
        return report

    def _sweep_settled(self, report: SweepReport, *, batch: int) -> None:
        """Keys an old URL may still write (S3): undo late writes, end watches that are over,
        delete aside copies no GET URL can reach any more."""
        download_ttl = timedelta(seconds=self.settings.download_url_ttl_seconds)
        with self.db.transaction() as session:
            watched = service.watched_ids(session, limit=batch)
        for upload_id in watched:
            with self.db.transaction() as session:
                upload = service.get(session, upload_id=upload_id)
                if upload is None:
                    continue
                # Locks every upload of the key, newest first, as the other signals do.
                if self._undo_late_write(session, upload.key, via=Signal.SWEEPER):
                    report.undone += 1
                session.refresh(upload)
                ended = service.end_watch(upload, now=datetime.now(UTC), download_ttl=download_ttl)
                if ended and upload.status == UploadStatus.DELETED:
                    session.delete(upload)  # a deleted photo's tombstone: its key is safe now
        with self.db.transaction() as session:
            due = service.asides_due(session, now=datetime.now(UTC), limit=batch)
        for upload_id in due:
            with self.db.transaction() as session:
                upload = service.get(session, upload_id=upload_id, lock=True)
                if upload is not None:
                    service.drop_aside(self.store, upload)
                    report.released += 1

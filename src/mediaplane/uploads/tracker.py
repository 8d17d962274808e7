"""`UploadTracker`: where every upload signal lands; each signal gets its own transaction."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from mediaplane.db import Database
from mediaplane.imaging import ImageLimits
from mediaplane.settings import Settings
from mediaplane.storage import ObjectStore
from mediaplane.uploads import service
from mediaplane.uploads.models import PendingUpload
from mediaplane.uploads.service import HandOff, Signal

log = logging.getLogger(__name__)


@dataclass
class SweepReport:
    checked: int = 0
    settled: int = 0
    expired: int = 0


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
        return False

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
        return report

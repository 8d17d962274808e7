"""Pending uploads: hand out a presigned PUT, then notice the object's arrival exactly once.

Every signal (the local storage route, S3 bucket events, the sweeper, a client's `complete`)
ends in `notice()`, which locks the upload's row and moves it out of `pending` at most once:
the first signal to arrive wins, later ones find it settled and change nothing. The hand-off to
processing happens in that same transaction, so it happens exactly when the upload is marked.
Routes and the sweeper own the transactions; these functions add and flush.
"""

from __future__ import annotations

import io
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from mediaplane.imaging import ImageLimits, ImageRejected, sniff_format
from mediaplane.imaging.cover import COVER_PREFIX_BYTES, check_data_covers
from mediaplane.imaging.formats import SNIFF_BYTES
from mediaplane.storage import ObjectNotFound, ObjectStore
from mediaplane.uploads.keys import accepted_copy_key
from mediaplane.uploads.models import PendingUpload, UploadKind, UploadStatus

UPLOAD_CONTENT_TYPE = "image/jpeg"


class Signal(StrEnum):
    """Who noticed the upload first (kept in `completed_via`)."""

    STORAGE = "storage"
    WEBHOOK = "webhook"
    SWEEPER = "sweeper"
    CLIENT = "client"


HandOff = Callable[[Session, PendingUpload], None]


@dataclass(frozen=True)
class Notice:
    upload: PendingUpload
    changed: bool


def create(
    session: Session,
    store: ObjectStore,
    *,
    kind: UploadKind,
    owner_id: str,
    key: str,
    max_bytes: int,
    ttl_seconds: int,
    now: datetime,
    upload_id: uuid.UUID | None = None,
    project_id: uuid.UUID | None = None,
) -> tuple[PendingUpload, str]:
    """Record a pending upload and return it with its presigned PUT URL."""
    # A key can be handed out again (an operator's one profile picture): the older pending
    # upload of that key is superseded, so one object never completes two uploads.
    session.execute(
        update(PendingUpload)
        .where(PendingUpload.key == key, PendingUpload.status == UploadStatus.PENDING)
        .values(status=UploadStatus.EXPIRED, reason="superseded")
    )
    upload = PendingUpload(
        id=upload_id or uuid.uuid4(),
        kind=kind,
        owner_id=owner_id,
        project_id=project_id,
        key=key,
        content_type=UPLOAD_CONTENT_TYPE,
        max_bytes=max_bytes,
        status=UploadStatus.PENDING,
        url_expires_at=now + timedelta(seconds=ttl_seconds),
        created_at=now,
        derivatives=[],
    )
    session.add(upload)
    session.flush()
    url = store.presign_put(key, content_type=UPLOAD_CONTENT_TYPE, expires_in=ttl_seconds)
    return upload, url


def get(session: Session, *, upload_id: uuid.UUID, lock: bool = False) -> PendingUpload | None:
    query = select(PendingUpload).where(PendingUpload.id == upload_id)
    if lock:
        query = query.with_for_update()
    return session.scalars(query).one_or_none()


def _noticeable(upload: PendingUpload) -> bool:
    # An upload we marked `expired` ourselves may still arrive: a long PUT that started before
    # the URL expired. Only a superseded one is settled for good.
    if upload.status == UploadStatus.PENDING:
        return True
    return upload.status == UploadStatus.EXPIRED and upload.reason == "url_expired"


def notice(
    session: Session,
    store: ObjectStore,
    *,
    upload: PendingUpload,
    via: Signal,
    now: datetime,
    limits: ImageLimits,
    hand_off: Sequence[HandOff] = (),
) -> Notice:
    """Settle a locked upload if its object is there: uploaded (and handed off) or rejected."""
    if not _noticeable(upload):
        return Notice(upload, changed=False)
    info = store.head(upload.key)
    if info is None:
        return Notice(upload, changed=False)
    if info.size > upload.max_bytes:
        return Notice(_reject(store, upload, "file_too_large", now, via, info.size), changed=True)
    head = _leading_bytes(store, upload.key, COVER_PREFIX_BYTES)
    fmt = sniff_format(head)
    if fmt is None or fmt not in limits.formats:
        return Notice(_reject(store, upload, "not_an_image", now, via, info.size), changed=True)
    try:
        # From the headers alone: a header claiming far more pixels than the data can hold.
        check_data_covers(head, info.size)
    except ImageRejected as exc:
        return Notice(_reject(store, upload, exc.reason, now, via, info.size), changed=True)
    if upload.kind == UploadKind.PROFILE_PICTURE:
        # The key is reused by every new picture and a presigned PUT overwrites it before we
        # can look: keep the accepted bytes aside so a rejected successor can be undone.
        store.put(
            accepted_copy_key(upload.key),
            io.BytesIO(store.read(upload.key)),
            content_type=upload.content_type,
        )
    upload.status = UploadStatus.UPLOADED
    upload.reason = None
    upload.size = info.size
    upload.completed_at = now
    upload.completed_via = via
    upload.processing_requested_at = now
    session.flush()
    for handler in hand_off:
        handler(session, upload)
    return Notice(upload, changed=True)


def _leading_bytes(store: ObjectStore, key: str, size: int = SNIFF_BYTES) -> bytes:
    try:
        chunks = store.open(key)
    except ObjectNotFound:
        return b""
    head = b""
    for chunk in chunks:
        head += chunk
        if len(head) >= size:
            break
    close = getattr(chunks, "close", None)
    if close is not None:
        close()
    return head


def _reject(
    store: ObjectStore, upload: PendingUpload, reason: str, now: datetime, via: Signal, size: int
) -> PendingUpload:
    previous = accepted_copy_key(upload.key)
    if upload.kind == UploadKind.PROFILE_PICTURE and store.head(previous) is not None:
        # Put the last accepted picture back rather than leave the operator with none.
        store.put(upload.key, io.BytesIO(store.read(previous)), content_type=upload.content_type)
    else:
        store.delete(upload.key)
    upload.status = UploadStatus.REJECTED
    upload.reason = reason
    upload.size = size
    upload.completed_at = now
    upload.completed_via = via
    return upload


def expire_if_absent(
    store: ObjectStore, *, upload: PendingUpload, now: datetime, grace: timedelta
) -> bool:
    """Mark a pending upload `expired` when its URL (plus grace) has passed and nothing came."""
    if upload.status != UploadStatus.PENDING or now <= upload.url_expires_at + grace:
        return False
    if store.head(upload.key) is not None:
        return False
    upload.status = UploadStatus.EXPIRED
    upload.reason = "url_expired"
    upload.completed_at = now
    return True


def pending_ids(session: Session, *, limit: int) -> list[uuid.UUID]:
    """Pending uploads, oldest URL first (the sweeper's work list)."""
    query = (
        select(PendingUpload.id)
        .where(PendingUpload.status == UploadStatus.PENDING)
        .order_by(PendingUpload.url_expires_at)
        .limit(limit)
    )
    return list(session.scalars(query))


def lock_by_key(session: Session, *, key: str) -> list[PendingUpload]:
    """Uploads of `key` that a signal could still settle, newest first, locked."""
    query = (
        select(PendingUpload)
        .where(PendingUpload.key == key)
        .where(PendingUpload.status.in_([UploadStatus.PENDING, UploadStatus.EXPIRED]))
        .order_by(PendingUpload.created_at.desc())
        .with_for_update()
    )
    return [u for u in session.scalars(query) if _noticeable(u)]

"""Pending uploads: hand out a presigned PUT, then notice the object's arrival exactly once.

Every signal (the local storage route, S3 bucket events, the sweeper, a client's `complete`)
ends in `notice()`, which locks the upload's row and moves it out of `pending` at most once:
the first signal to arrive wins, later ones find it settled and change nothing. The hand-off to
processing happens in that same transaction, so it happens exactly when the upload is marked.
Routes and the sweeper own the transactions; these functions add and flush.

A URL outlives its upload's settlement. Local disk refuses its later writes (`admit_write`,
asked by the storage route). On S3, which takes them, settlement copies the object aside and
checks the copy (the key may change under us; the copy cannot), downloads and processing read
the copy while the URL can still write (`accepted_key`), and `undo_late_write` puts the key
back — the accepted bytes, or nothing for a rejected or erased upload — whenever a signal
(event, sweeper) shows a write to a settled key. See docs/storage-events.md, "Settled uploads".
"""

from __future__ import annotations

import io
import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import Table, insert, select, update
from sqlalchemy.orm import Session

from mediaplane.errors import Conflict, NotFound
from mediaplane.imaging import ImageLimits, ImageRejected, sniff_format
from mediaplane.imaging.cover import COVER_PREFIX_BYTES, check_data_covers
from mediaplane.imaging.formats import SNIFF_BYTES
from mediaplane.imaging.normalise import normalise_picture
from mediaplane.storage import ObjectNotFound, ObjectStore
from mediaplane.uploads.keys import accepted_copy_key, aside_copy_key
from mediaplane.uploads.models import PendingUpload, UploadKind, UploadStatus

UPLOAD_CONTENT_TYPE = "image/jpeg"
# What a client may declare when it asks for an upload URL (`contentType`); the URL is signed
# for it, so the PUT must send exactly that `Content-Type`. It is only a declaration: what is
# served is labelled with the type sniffed from the bytes (`notice`).
UPLOAD_CONTENT_TYPES = (
    "image/jpeg",
    "image/png",
    "image/webp",
    "image/heic",
    "image/heif",
    "image/avif",
)

log = logging.getLogger(__name__)


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


@dataclass(frozen=True)
class NewUpload:
    """What differs between the uploads of one `create_many` call."""

    key: str
    upload_id: uuid.UUID | None = None


def create(
    session: Session,
    store: ObjectStore,
    *,
    kind: UploadKind,
    owner_id: str,
    key: str,
    max_bytes: int,
    ttl_seconds: int,
    grace_seconds: int,
    now: datetime,
    upload_id: uuid.UUID | None = None,
    project_id: uuid.UUID | None = None,
    fresh_key: bool = False,
    content_type: str = UPLOAD_CONTENT_TYPE,
) -> tuple[PendingUpload, str]:
    """Record a pending upload and return it with its presigned PUT URL.

    `grace_seconds` after the URL's expiry, a write through it may still land (a PUT begun just
    before, clock skew): on a store that cannot refuse writes, the key is watched until then.
    `fresh_key`: the key was never handed out before (it holds a new id), so no older pending
    upload of it can exist to supersede.
    """
    [(upload, url)] = create_many(
        session,
        store,
        kind=kind,
        owner_id=owner_id,
        uploads=[NewUpload(key=key, upload_id=upload_id)],
        max_bytes=max_bytes,
        ttl_seconds=ttl_seconds,
        grace_seconds=grace_seconds,
        now=now,
        project_id=project_id,
        fresh_keys=fresh_key,
        content_type=content_type,
    )
    return upload, url


def create_many(
    session: Session,
    store: ObjectStore,
    *,
    kind: UploadKind,
    owner_id: str,
    uploads: Sequence[NewUpload],
    max_bytes: int,
    ttl_seconds: int,
    grace_seconds: int,
    now: datetime,
    project_id: uuid.UUID | None = None,
    fresh_keys: bool = False,
    content_type: str = UPLOAD_CONTENT_TYPE,
) -> list[tuple[PendingUpload, str]]:
    """Record pending uploads of one owner in one INSERT; each with its presigned PUT URL.

    Rows go in through a Core insert, not the unit of work: the objects returned are not
    attached to `session` (nothing else is done with them in the request that issues them),
    and the ORM's flush bookkeeping was a sixth of this hot path's CPU (measured with py-spy).
    Each URL is signed for `content_type` (one of `UPLOAD_CONTENT_TYPES`).
    """
    if content_type not in UPLOAD_CONTENT_TYPES:
        raise ValueError(f"create_many: {content_type!r} is not an upload content type")
    if not fresh_keys:
        # A key can be handed out again (an operator's one profile picture): the older pending
        # upload of that key is superseded, so one object never completes two uploads.
        session.execute(
            update(PendingUpload)
            .where(
                PendingUpload.key.in_([u.key for u in uploads]),
                PendingUpload.status == UploadStatus.PENDING,
            )
            .values(status=UploadStatus.EXPIRED, reason="superseded")
            .execution_options(synchronize_session=False)
        )
    values = pending_values(
        store,
        kind=kind,
        owner_id=owner_id,
        uploads=uploads,
        max_bytes=max_bytes,
        ttl_seconds=ttl_seconds,
        grace_seconds=grace_seconds,
        now=now,
        project_id=project_id,
        content_type=content_type,
    )
    session.execute(insert(UPLOADS), values)
    rows = [PendingUpload(**row) for row in values]
    return [
        (row, store.presign_put(row.key, content_type=content_type, expires_in=ttl_seconds))
        for row in rows
    ]


def pending_values(
    store: ObjectStore,
    *,
    kind: UploadKind,
    owner_id: str,
    uploads: Sequence[NewUpload],
    max_bytes: int,
    ttl_seconds: int,
    grace_seconds: int,
    now: datetime,
    project_id: uuid.UUID | None = None,
    content_type: str = UPLOAD_CONTENT_TYPE,
) -> list[dict[str, Any]]:
    """The column values (`INSERTED_COLUMNS`) of the pending uploads `create_many` inserts.

    Plain dicts: building mapped `PendingUpload` objects was 7% of the hot path's CPU.
    """
    expires_at = now + timedelta(seconds=ttl_seconds)
    watch_until = None
    if not store.gates_presigned_writes:
        watch_until = expires_at + timedelta(seconds=grace_seconds)
    return [
        {
            "id": u.upload_id or uuid.uuid4(),
            "kind": kind,
            "owner_id": owner_id,
            "project_id": project_id,
            "key": u.key,
            "content_type": content_type,
            "max_bytes": max_bytes,
            "status": UploadStatus.PENDING,
            "url_expires_at": expires_at,
            "watch_until": watch_until,
            "created_at": now,
            "derivatives": [],
        }
        for u in uploads
    ]


UPLOADS: Table = PendingUpload.__table__  # type: ignore[assignment]
# The columns `pending_values` gives a value; the others start NULL.
INSERTED_COLUMNS = (
    "id",
    "kind",
    "owner_id",
    "project_id",
    "key",
    "content_type",
    "max_bytes",
    "status",
    "url_expires_at",
    "watch_until",
    "created_at",
    "derivatives",
)


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
    checked = upload.key
    if upload.watch_until is not None:
        # The URL can still overwrite the key: check a copy no URL can write, and keep it.
        aside = aside_copy_key(upload.key, upload.id)
        try:
            info = store.copy(upload.key, aside, content_type=upload.content_type)
        except ObjectNotFound:
            return Notice(upload, changed=False)
        upload.aside_key = checked = aside
    if info.size > upload.max_bytes:
        return Notice(_reject(store, upload, "file_too_large", now, via, info.size), changed=True)
    head = _leading_bytes(store, checked, COVER_PREFIX_BYTES)
    fmt = sniff_format(head)
    if fmt is None or fmt not in limits.formats:
        return Notice(_reject(store, upload, "not_an_image", now, via, info.size), changed=True)
    try:
        # From the headers alone: a header claiming far more pixels than the data can hold.
        check_data_covers(head, info.size)
    except ImageRejected as exc:
        return Notice(_reject(store, upload, exc.reason, now, via, info.size), changed=True)
    content_type = fmt.content_type
    if upload.kind == UploadKind.PROFILE_PICTURE:
        # Shown to others: normalised once accepted (upright, stripped, ≤ 1024 px, JPEG).
        # The key is reused by every new picture and a presigned PUT overwrites it before we
        # can look: the picture shown is the accepted copy, replaced only by an accepted
        # successor; the spec's key gets the same bytes.
        try:
            picture = normalise_picture(store.read(checked), limits)
        except ImageRejected as exc:
            return Notice(_reject(store, upload, exc.reason, now, via, info.size), changed=True)
        content_type = picture.content_type
        accepted = accepted_copy_key(upload.key)
        store.put(accepted, io.BytesIO(picture.data), content_type=content_type)
        # A copy answers the ETag (a put does not on S3): late writes are told apart by it.
        info = store.copy(accepted, upload.key, content_type=content_type)
    upload.status = UploadStatus.UPLOADED
    upload.reason = None
    upload.size = info.size
    upload.etag = info.etag
    upload.content_type = content_type
    upload.completed_at = now
    upload.completed_via = via
    upload.processing_requested_at = now
    session.flush()
    for handler in hand_off:
        handler(session, upload)
    return Notice(upload, changed=True)


def accepted_key(upload: PendingUpload) -> str:
    """Where an uploaded upload's accepted bytes are read from, to serve and to process: the
    aside copy while a URL can still write the key, the last accepted copy for a profile
    picture (whose key each new URL overwrites), else the spec's key itself."""
    if upload.kind == UploadKind.PROFILE_PICTURE:
        return accepted_copy_key(upload.key)
    if upload.aside_key is not None and upload.watch_until is not None:
        return upload.aside_key
    return upload.key


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
    if upload.aside_key is not None:
        store.delete(upload.aside_key)
        upload.aside_key = None
    _clear_key(store, upload)
    upload.status = UploadStatus.REJECTED
    upload.reason = reason
    upload.size = size
    upload.completed_at = now
    upload.completed_via = via
    return upload


def _clear_key(store: ObjectStore, upload: PendingUpload) -> None:
    """Leave at the key what the settled `upload` allows there besides its own bytes: the last
    accepted picture for a profile picture (rather than none), else nothing."""
    previous = accepted_copy_key(upload.key)
    if upload.kind == UploadKind.PROFILE_PICTURE and store.head(previous) is not None:
        store.copy(previous, upload.key, content_type=store_type(store, previous))
    else:
        store.delete(upload.key)


def store_type(store: ObjectStore, key: str) -> str:
    info = store.head(key)
    return (info.content_type if info else None) or UPLOAD_CONTENT_TYPE


def admit_write(session: Session, *, key: str, lock: bool = False) -> int:
    """The byte limit of the upload a write to `key` would complete; `Conflict`
    (`upload_already_settled`) when every upload of the key is settled, `NotFound`
    (`upload_not_found`) when none was ever issued. `lock` holds the rows for the caller's
    transaction, so no signal can settle them while the write is published."""
    query = select(PendingUpload).where(PendingUpload.key == key)
    query = query.order_by(PendingUpload.created_at.desc())
    if lock:
        query = query.with_for_update()
    uploads = list(session.scalars(query))
    for upload in uploads:
        if _noticeable(upload):
            return upload.max_bytes
    if uploads:
        raise Conflict(
            "upload_already_settled",
            f"the upload of this URL is already {uploads[0].status}; it takes no more writes",
        )
    raise NotFound("upload_not_found", "no upload was issued for this key")


def refuse_write(
    session: Session, store: ObjectStore, *, key: str, reason: str, size: int, now: datetime
) -> PendingUpload | None:
    """Settle the upload a refused local write was for as `rejected` (`reason`), as `notice`
    would have once the bytes were stored: the outcome is the same on both backends, only
    sooner. Nothing of the write is kept (the caller discards it)."""
    uploads = lock_by_key(session, key=key)
    if not uploads:
        return None
    return _reject(store, uploads[0], reason, now, Signal.STORAGE, size)


def undo_late_write(session: Session, store: ObjectStore, *, key: str) -> str | None:
    """A write may have reached `key` after its upload was settled: put back what the newest
    upload of the key allows — its accepted bytes, or nothing (the last accepted picture for
    a profile picture). Returns what was done (`restored`, `removed`) or None."""
    query = (
        select(PendingUpload)
        .where(PendingUpload.key == key)
        .order_by(PendingUpload.created_at.desc())
        .with_for_update()
    )
    newest = session.scalars(query).first()
    if newest is None or _noticeable(newest):
        return None  # no upload, or the write is the pending upload's own: `notice` judges it
    info = store.head(key)
    if newest.status == UploadStatus.UPLOADED:
        if newest.etag is None:  # settled before ETags were recorded: nothing to compare with
            return None
        if info is not None and info.etag == newest.etag:
            return None
        source = accepted_key(newest)
        if source == key or store.head(source) is None:
            log.error(
                "upload %s: %s changed after settlement and cannot be restored", newest.id, key
            )
            return None
        newest.etag = store.copy(source, key, content_type=newest.content_type).etag
        return "restored"
    if info is None:
        return None
    _clear_key(store, newest)
    return "removed"


def watched_ids(session: Session, *, limit: int) -> list[uuid.UUID]:
    """Settled uploads whose key an old URL may still write, oldest watch first."""
    query = (
        select(PendingUpload.id)
        .where(PendingUpload.watch_until.is_not(None))
        .where(PendingUpload.status != UploadStatus.PENDING)
        .order_by(PendingUpload.watch_until)
        .limit(limit)
    )
    return list(session.scalars(query))


def end_watch(upload: PendingUpload, *, now: datetime, download_ttl: timedelta) -> bool:
    """Stop watching once no URL can write any more; the aside copy then waits until no GET
    URL of it can be live. Call after a last `undo_late_write`."""
    if upload.watch_until is None or now <= upload.watch_until:
        return False
    upload.watch_until = None
    if upload.aside_key is not None:
        upload.aside_delete_after = now + download_ttl
    return True


def asides_due(session: Session, *, now: datetime, limit: int) -> list[uuid.UUID]:
    query = (
        select(PendingUpload.id)
        .where(PendingUpload.aside_delete_after < now)
        .order_by(PendingUpload.aside_delete_after)
        .limit(limit)
    )
    return list(session.scalars(query))


def drop_aside(store: ObjectStore, upload: PendingUpload) -> None:
    if upload.aside_key is not None:
        store.delete(upload.aside_key)
    upload.aside_key = None
    upload.aside_delete_after = None


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
    upload.watch_until = None  # the URL and its grace are over: nothing can write any more
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

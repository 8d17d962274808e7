"""Media API logic: hand out upload URLs per kind, shape what is read back. No FastAPI here.

Every download URL comes from `ObjectStore.presign_get`: the one place that builds them.
"""

from __future__ import annotations

import base64
import uuid
from datetime import datetime
from functools import cache
from typing import NamedTuple, TypeVar

from sqlalchemy import Insert, Select, and_, bindparam, insert, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.orm import Session

from mediaplane.errors import InvalidInput, NotFound
from mediaplane.faces import service as faces_service
from mediaplane.faces.models import FaceMatch, SelfieFace
from mediaplane.jobs import steps as job_steps
from mediaplane.jobs.models import ProcessingStep, StepName, StepStatus
from mediaplane.media_api.schemas import (
    Download,
    FaceBox,
    FaceStatus,
    MyPhoto,
    PhotoFaceView,
    PhotoView,
    ProcessingView,
    SelfieView,
    StepView,
)
from mediaplane.projects import service as projects
from mediaplane.settings import Settings
from mediaplane.storage import ObjectStore
from mediaplane.uploads import PendingUpload, UploadKind, UploadStatus
from mediaplane.uploads import keys as storage_keys
from mediaplane.uploads import service as uploads


def create_selfie_upload(
    session: Session,
    store: ObjectStore,
    settings: Settings,
    *,
    user_id: str,
    now: datetime,
    content_type: str = uploads.UPLOAD_CONTENT_TYPE,
) -> tuple[PendingUpload, str]:
    return uploads.create(
        session,
        store,
        kind=UploadKind.SELFIE,
        owner_id=user_id,
        key=storage_keys.selfie_key(user_id, now),
        max_bytes=settings.selfie_max_bytes,
        ttl_seconds=settings.upload_url_ttl_seconds,
        grace_seconds=settings.upload_sweep_grace_seconds,
        now=now,
        content_type=content_type,
    )


def create_photo_upload(
    session: Session,
    store: ObjectStore,
    settings: Settings,
    *,
    photographer_id: str,
    project_id: uuid.UUID,
    now: datetime,
    content_type: str = uploads.UPLOAD_CONTENT_TYPE,
) -> tuple[PendingUpload, str]:
    photo_id = uuid.uuid4()
    return uploads.create(
        session,
        store,
        kind=UploadKind.PHOTO,
        owner_id=photographer_id,
        upload_id=photo_id,
        project_id=project_id,
        key=storage_keys.photo_key(project_id, photo_id),
        max_bytes=settings.photo_max_bytes,
        ttl_seconds=settings.upload_url_ttl_seconds,
        grace_seconds=settings.upload_sweep_grace_seconds,
        now=now,
        fresh_key=True,
        content_type=content_type,
    )


class IssuedURL(NamedTuple):
    upload_id: uuid.UUID
    key: str
    url: str


async def create_member_photo_upload(
    conn: AsyncConnection,
    store: ObjectStore,
    settings: Settings,
    *,
    photographer_id: str,
    project_id: uuid.UUID,
    now: datetime,
    content_type: str = uploads.UPLOAD_CONTENT_TYPE,
) -> IssuedURL | None:
    """`create_photo_upload` for a photographer already a member of a live project, in one
    statement on an autocommit connection (the hot path: no ORM, no thread); None, and nothing
    written, when `projects.upload_allowed` does not hold: the caller then takes the full path
    (`authorize_upload` + `create_photo_upload`), which refuses or creates the project."""
    if content_type not in uploads.UPLOAD_CONTENT_TYPES:
        raise ValueError(f"{content_type!r} is not an upload content type")
    photo_id = uuid.uuid4()
    key = storage_keys.photo_key(project_id, photo_id)
    [values] = uploads.pending_values(
        store,
        kind=UploadKind.PHOTO,
        owner_id=photographer_id,
        uploads=[uploads.NewUpload(key, photo_id)],
        project_id=project_id,
        max_bytes=settings.photo_max_bytes,
        ttl_seconds=settings.upload_url_ttl_seconds,
        grace_seconds=settings.upload_sweep_grace_seconds,
        now=now,
        content_type=content_type,
    )
    # Signed before the row is written: a URL is only returned for a row that was.
    url = store.presign_put(
        key, content_type=content_type, expires_in=settings.upload_url_ttl_seconds
    )
    result = await conn.execute(_insert_if_allowed(), values)
    return IssuedURL(photo_id, key, url) if result.rowcount == 1 else None


@cache
def _insert_if_allowed() -> Insert:
    """INSERT INTO uploads (...) SELECT <the row> WHERE <projects.upload_allowed>, built once
    with one bind parameter per column (`uploads.pending_values`)."""
    table = uploads.UPLOADS
    # The psycopg dialect types each parameter (`%(id)s::UUID`), as PostgreSQL needs in a SELECT.
    names = uploads.INSERTED_COLUMNS
    values = [bindparam(n, type_=table.c[n].type) for n in names]
    allowed = projects.upload_allowed(bindparam("project_id"), bindparam("owner_id"))
    # rowcount (1: inserted, 0: not allowed) is only kept for INSERT when asked for.
    statement = insert(table).from_select(names, select(*values).where(allowed))
    return statement.execution_options(preserve_rowcount=True)


def create_photo_uploads(
    session: Session,
    store: ObjectStore,
    settings: Settings,
    *,
    photographer_id: str,
    project_id: uuid.UUID,
    count: int,
    now: datetime,
    content_type: str = uploads.UPLOAD_CONTENT_TYPE,
) -> list[tuple[PendingUpload, str]]:
    """`count` photo uploads at once: one INSERT, one transaction (the batch endpoint)."""
    ids = [uuid.uuid4() for _ in range(count)]
    return uploads.create_many(
        session,
        store,
        kind=UploadKind.PHOTO,
        owner_id=photographer_id,
        uploads=[
            uploads.NewUpload(key=storage_keys.photo_key(project_id, i), upload_id=i) for i in ids
        ],
        project_id=project_id,
        max_bytes=settings.photo_max_bytes,
        ttl_seconds=settings.upload_url_ttl_seconds,
        grace_seconds=settings.upload_sweep_grace_seconds,
        now=now,
        fresh_keys=True,
        content_type=content_type,
    )


def create_profile_picture_upload(
    session: Session,
    store: ObjectStore,
    settings: Settings,
    *,
    operator_id: str,
    now: datetime,
    content_type: str = uploads.UPLOAD_CONTENT_TYPE,
) -> tuple[PendingUpload, str, str]:
    key = storage_keys.profile_picture_key(operator_id)
    upload, url = uploads.create(
        session,
        store,
        kind=UploadKind.PROFILE_PICTURE,
        owner_id=operator_id,
        key=key,
        max_bytes=settings.profile_picture_max_bytes,
        ttl_seconds=settings.upload_url_ttl_seconds,
        grace_seconds=settings.upload_sweep_grace_seconds,
        now=now,
        content_type=content_type,
    )
    return upload, url, file_url(settings, key)


def file_url(settings: Settings, key: str) -> str:
    """The permanent identifier of an object, built from R2_PUBLIC_URL: to store, never to serve.

    Without R2_PUBLIC_URL it is `storage:///KEY`, an identifier no browser can fetch.
    """
    base = settings.r2_public_url.rstrip("/") if settings.r2_public_url else "storage://"
    return f"{base}/{key}"


def download(store: ObjectStore, settings: Settings, key: str) -> Download:
    ttl = settings.download_url_ttl_seconds
    return Download(url=store.presign_get(key, expires_in=ttl), expires_in_seconds=ttl)


def download_upload(store: ObjectStore, settings: Settings, upload: PendingUpload) -> Download:
    """A GET of an upload's accepted bytes (never what a late write left at its key), labelled
    with their sniffed type, not the one the client claimed."""
    ttl = settings.download_url_ttl_seconds
    url = store.presign_get(
        uploads.accepted_key(upload), expires_in=ttl, content_type=upload.content_type
    )
    return Download(url=url, expires_in_seconds=ttl)


def get_upload(session: Session, *, upload_id: uuid.UUID, kind: UploadKind) -> PendingUpload:
    upload = uploads.get(session, upload_id=upload_id)
    if upload is None or upload.kind != kind or upload.status == UploadStatus.DELETED:
        raise NotFound(f"{kind}_not_found", f"no {kind.replace('_', ' ')} {upload_id}")
    return upload


def photo_views(
    session: Session, store: ObjectStore, settings: Settings, photos: list[PendingUpload]
) -> list[PhotoView]:
    """Views of several photos, their steps and their faces read in one query each."""
    by_upload: dict[uuid.UUID, dict[str, StepView]] = {}
    for row in job_steps.list_for(session, upload_ids=[p.id for p in photos]):
        by_upload.setdefault(row.upload_id, {})[row.step] = StepView(
            status=row.status, reason=row.reason, attempts=row.attempts
        )
    faces = faces_service.boxes_of(session, photo_ids=[p.id for p in photos])
    return [
        photo_view(
            store,
            settings,
            p,
            steps=by_upload.get(p.id, {}),
            faces=[PhotoFaceView(box=FaceBox(**box)) for box in faces.get(p.id, [])],
        )
        for p in photos
    ]


def photo_view(
    store: ObjectStore,
    settings: Settings,
    photo: PendingUpload,
    *,
    steps: dict[str, StepView] | None = None,
    faces: list[PhotoFaceView] | None = None,
) -> PhotoView:
    assert photo.project_id is not None
    downloads: dict[str, Download] = {}
    if photo.status == UploadStatus.UPLOADED:
        downloads["original"] = download_upload(store, settings, photo)
        for name in photo.derivatives:
            key = storage_keys.derivative_key(photo.project_id, photo.id, name)
            downloads[name] = download(store, settings, key)
    return PhotoView(
        photo_id=photo.id,
        project_id=photo.project_id,
        status=photo.status,
        reason=photo.reason,
        processing=processing_of(photo, steps or {}),
        size=photo.size,
        width=photo.width,
        height=photo.height,
        created_at=photo.created_at,
        uploaded_at=photo.completed_at if photo.status == UploadStatus.UPLOADED else None,
        downloads=downloads,
        steps=steps or {},
        faces=faces or [],
    )


def processing_of(photo: PendingUpload, steps: dict[str, StepView]) -> ProcessingView:
    """A photo's overall outcome (docs/media-api.md): `processed` once every step is done,
    `failed` as soon as one failed for good; bytes refused on arrival (`rejected`) are
    `failed` at step `upload`."""
    if photo.status == UploadStatus.REJECTED:
        return ProcessingView(status="failed", failed_step="upload", reason=photo.reason)
    if photo.status != UploadStatus.UPLOADED:
        return ProcessingView(status=photo.status, reason=photo.reason)
    for name, step in steps.items():
        if step.status == StepStatus.FAILED:
            return ProcessingView(status="failed", failed_step=name, reason=step.reason)
    if steps and all(step.status == StepStatus.DONE for step in steps.values()):
        return ProcessingView(status="processed")
    return ProcessingView(status="processing")


def selfie_view(
    session: Session, store: ObjectStore, settings: Settings, selfie: PendingUpload
) -> SelfieView:
    uploaded = selfie.status == UploadStatus.UPLOADED
    return SelfieView(
        selfie_id=selfie.id,
        status=selfie.status,
        reason=selfie.reason,
        created_at=selfie.created_at,
        uploaded_at=selfie.completed_at if uploaded else None,
        download=download_upload(store, settings, selfie) if uploaded else None,
        face=face_status(session, selfie),
    )


def face_status(session: Session, selfie: PendingUpload) -> FaceStatus:
    """The selfie's face processing, from its step and the enrolled face."""
    if selfie.status == UploadStatus.ERASED:
        return FaceStatus(status="erased")
    enrolled = session.get(SelfieFace, selfie.owner_id)
    if enrolled is not None and enrolled.selfie_id == selfie.id:
        return FaceStatus(status="indexed")
    step = session.get(ProcessingStep, (selfie.id, StepName.SELFIE))
    if step is None:
        return FaceStatus(status="off" if selfie.status == UploadStatus.UPLOADED else "waiting")
    if step.status == StepStatus.FAILED:
        code = (step.reason or "failed").split(":", 1)[0]
        known = code in ("no_face", "multiple_faces")
        return FaceStatus(status=code if known else "failed", reason=step.reason)
    if step.status == StepStatus.DONE:
        # Done without enrolling: consent was gone when it ran, or a newer selfie won.
        return FaceStatus(status="not_indexed", reason="no consent, or a newer selfie")
    return FaceStatus(status="processing")


def my_photos(
    session: Session,
    store: ObjectStore,
    settings: Settings,
    *,
    user_id: str,
    project_id: uuid.UUID | None,
    cursor: str | None = None,
    limit: int = 100,
) -> tuple[list[MyPhoto], str | None]:
    """The user's matched photos, newest first, in every project or one, keyset-paginated:
    presigned previews, never the original."""
    query = (
        select(FaceMatch, PendingUpload)
        .join(PendingUpload, PendingUpload.id == FaceMatch.photo_id)
        .where(FaceMatch.user_id == user_id, PendingUpload.status == UploadStatus.UPLOADED)
    )
    if project_id is not None:
        query = query.where(FaceMatch.project_id == project_id)
    query = _newest_first(query, cursor)
    rows = [(row[0], row[1]) for row in session.execute(query.limit(limit + 1))]
    next_cursor = _encode_cursor(rows[limit - 1][1]) if len(rows) > limit else None
    items = []
    for match, photo in rows[:limit]:
        assert photo.project_id is not None
        downloads = {
            name: download(
                store, settings, storage_keys.derivative_key(photo.project_id, photo.id, name)
            )
            for name in photo.derivatives
        }
        items.append(
            MyPhoto(
                photo_id=photo.id,
                project_id=photo.project_id,
                similarity=round(match.similarity, 1),
                box=match.box,
                width=photo.width,
                height=photo.height,
                created_at=photo.created_at,
                downloads=downloads,
            )
        )
    return items, next_cursor


SelectT = TypeVar("SelectT", bound=Select)


def _newest_first(query: SelectT, cursor: str | None) -> SelectT:
    """Uploads newest first, after the page `cursor` ended on (keyset pagination)."""
    if cursor:
        created_at, last_id = _decode_cursor(cursor)
        query = query.where(
            or_(
                PendingUpload.created_at < created_at,
                and_(PendingUpload.created_at == created_at, PendingUpload.id < last_id),
            )
        )
    return query.order_by(PendingUpload.created_at.desc(), PendingUpload.id.desc())


def list_project_photos(
    session: Session,
    *,
    project_id: uuid.UUID,
    photographer_id: str | None,
    cursor: str | None,
    limit: int,
) -> tuple[list[PendingUpload], str | None]:
    """Newest first, keyset-paginated; `photographer_id` limits to that photographer's own."""
    query = select(PendingUpload).where(
        PendingUpload.kind == UploadKind.PHOTO, PendingUpload.project_id == project_id
    )
    query = query.where(PendingUpload.status != UploadStatus.DELETED)
    if photographer_id is not None:
        query = query.where(PendingUpload.owner_id == photographer_id)
    query = _newest_first(query, cursor)
    rows = list(session.scalars(query.limit(limit + 1)))
    next_cursor = _encode_cursor(rows[limit - 1]) if len(rows) > limit else None
    return rows[:limit], next_cursor


def _encode_cursor(row: PendingUpload) -> str:
    raw = f"{row.created_at.isoformat()}|{row.id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        created_at, last_id = raw.split("|")
        return datetime.fromisoformat(created_at), uuid.UUID(last_id)
    except ValueError:
        raise InvalidInput("invalid_cursor", "the cursor is not one this API returned") from None


def latest(
    session: Session, *, owner_id: str, kind: UploadKind, status: UploadStatus | None = None
) -> PendingUpload | None:
    query = select(PendingUpload).where(
        PendingUpload.owner_id == owner_id, PendingUpload.kind == kind
    )
    if status is not None:
        query = query.where(PendingUpload.status == status)
    query = query.order_by(PendingUpload.created_at.desc()).limit(1)
    return session.scalars(query).one_or_none()

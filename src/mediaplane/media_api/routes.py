"""The /v1 routes of the Media API (acme-media-api.md). Thin: parse, authorize, call, shape."""

from __future__ import annotations

import hmac
import uuid
from datetime import UTC, datetime
from functools import partial
from typing import Annotated

import anyio.to_thread
import sqlalchemy.exc
from fastapi import APIRouter, Depends, Query, Request, Response
from sqlalchemy.orm import Session
from starlette.exceptions import HTTPException as StarletteHTTPException

from mediaplane.auth import (
    AUDIENCE_BACKOFFICE,
    AUDIENCE_MEDIA,
    Guard,
    Principal,
    require_principal,
)
from mediaplane.consent import Purpose, require_consent
from mediaplane.db import Database
from mediaplane.errors import Conflict, Forbidden, NotFound, Unauthenticated
from mediaplane.faces import service as faces_service
from mediaplane.media_api import service
from mediaplane.media_api.schemas import (
    Download,
    MyPhotos,
    PhotoBatchRequest,
    PhotoPage,
    PhotoUploadRequest,
    PhotoUploadURL,
    PhotoUploadURLs,
    PhotoView,
    ProfilePictureUploadURL,
    SelfieUploadURL,
    SelfieView,
    StorageEventsResult,
    UploadRequest,
)
from mediaplane.media_api.storage_events import created_keys, parse_body
from mediaplane.projects import service as projects
from mediaplane.projects.erasure import erase_photos
from mediaplane.settings import Settings
from mediaplane.storage import ObjectStore
from mediaplane.uploads import PendingUpload, Signal, UploadKind, UploadStatus, UploadTracker
from mediaplane.web import ProblemRoute, fast_path_route

router = APIRouter(prefix="/v1", route_class=ProblemRoute, tags=["media"])

user = require_principal(AUDIENCE_MEDIA, roles=["user"])
consenting_user = require_consent(Purpose.BIOMETRIC_PROCESSING, principal=user)
photographer_guard = Guard.of(AUDIENCE_MEDIA, roles=["photographer"])
media_photographer = photographer_guard.dependency()
backoffice_photographer = require_principal(AUDIENCE_BACKOFFICE, roles=["photographer"])
operator = require_principal(AUDIENCE_BACKOFFICE, roles=["operator"])
_photographer_or_operator = require_principal(
    AUDIENCE_MEDIA, AUDIENCE_BACKOFFICE, roles=["photographer", "operator"]
)
anyone = require_principal(AUDIENCE_MEDIA, AUDIENCE_BACKOFFICE)


def _deps(request: Request) -> tuple[Settings, Database, ObjectStore]:
    state = request.app.state
    return state.settings, state.db, state.store


def _is_operator(principal: Principal) -> bool:
    # Operator powers come with backoffice tokens only: a `media` token claiming the role
    # gets none of them.
    return principal.audience == AUDIENCE_BACKOFFICE and "operator" in principal.roles


def photo_reader(principal: Principal = Depends(_photographer_or_operator)) -> Principal:
    """Photographers (either audience) and operators (backoffice tokens only)."""
    if "photographer" not in principal.roles and not _is_operator(principal):
        raise Forbidden("insufficient_role", "operators read photos with a backoffice token")
    return principal


# --- upload URLs ------------------------------------------------------------------------------


@router.post("/selfie/upload-url", status_code=201, response_model=SelfieUploadURL)
def selfie_upload_url(
    request: Request,
    body: UploadRequest | None = None,
    principal: Principal = Depends(consenting_user),
) -> SelfieUploadURL:
    """A presigned PUT for the user's selfie; needs active biometric_processing consent."""
    settings, db, store = _deps(request)
    content_type = (body or UploadRequest()).content_type
    with db.transaction() as session:
        upload, url = service.create_selfie_upload(
            session,
            store,
            settings,
            user_id=principal.subject,
            now=datetime.now(UTC),
            content_type=content_type,
        )
    return SelfieUploadURL(
        selfie_id=upload.id,
        upload_url=url,
        headers=_put_headers(content_type),
        key=upload.key,
        expires_in_seconds=settings.upload_url_ttl_seconds,
    )


def _may_upload(
    session: Session, settings: Settings, principal: Principal, project_id: uuid.UUID
) -> None:
    """Only a project's photographers upload into it (PROJECTS_MODE: docs/media-api.md)."""
    projects.authorize_upload(
        session,
        mode=settings.projects_mode,
        project_id=project_id,
        photographer_id=principal.subject,
        now=datetime.now(UTC),
    )


def _photo_upload_url(
    request: Request, principal: Principal, body: PhotoUploadRequest
) -> PhotoUploadURL:
    settings, db, store = _deps(request)
    with db.transaction() as session:
        _may_upload(session, settings, principal, body.project_id)
        upload, url = service.create_photo_upload(
            session,
            store,
            settings,
            photographer_id=principal.subject,
            project_id=body.project_id,
            now=datetime.now(UTC),
            content_type=body.content_type,
        )
    return _photo_url(settings, upload.id, upload.key, url, body.content_type)


def _photo_url(
    settings: Settings, photo_id: uuid.UUID, key: str, url: str, content_type: str
) -> PhotoUploadURL:
    """The answer for one photo upload URL (single, batch and fast path alike)."""
    return PhotoUploadURL(
        photo_id=photo_id,
        upload_url=url,
        headers=_put_headers(content_type),
        key=key,
        expires_in_seconds=settings.upload_url_ttl_seconds,
    )


def photo_upload_url(
    request: Request,
    body: PhotoUploadRequest,
    principal: Principal = Depends(media_photographer),
) -> PhotoUploadURL:
    """A presigned PUT for a project photo (audience media, role photographer)."""
    return _photo_upload_url(request, principal, body)


async def fast_photo_upload_url(request: Request) -> Response | None:
    """`photo_upload_url` for a well-formed request (JSON body, bearer token), on the event
    loop: no dependency solving, no thread; a member uploading into a live project gets one
    conditional INSERT (`service.create_member_photo_upload`). A first upload into a project
    (open mode) or a refusal takes `_photo_upload_url` in the thread pool; a request this does
    not parse takes the declared route (`web.fast_path_route`). docs/decisions.md,
    "Performance, round 2".
    """
    # FastAPI's order: the body is parsed before the token is checked.
    if not _is_json(request.headers.get("content-type")):
        return None
    try:
        raw = await request.body()
    except Exception as exc:
        # What FastAPI answers when the body cannot be read (a disconnect; BodyLimit's cut,
        # which BodyLimit then turns into its 413). Not retried: the stream is spent.
        raise StarletteHTTPException(400, "There was an error parsing the body") from exc
    try:
        body = PhotoUploadRequest.model_validate_json(raw)
    except ValueError:  # pydantic's ValidationError: the declared route says why
        return None
    principal = await photographer_guard.check_on_loop(request)
    if principal is None:
        return None
    settings, db, store = _deps(request)
    try:
        async with db.async_engine.connect() as conn:
            issued = await service.create_member_photo_upload(
                conn,
                store,
                settings,
                photographer_id=principal.subject,
                project_id=body.project_id,
                now=datetime.now(UTC),
                content_type=body.content_type,
            )
    except sqlalchemy.exc.DBAPIError as exc:
        if not exc.connection_invalidated:
            raise
        # A pooled connection the server dropped (restart, failover; this pool does not ping):
        # the pool is now invalidated, and the full path, whose engine pings, answers (a 503
        # if the database is still down). At worst the lost INSERT had committed: a pending
        # row no URL was given for, which the sweeper expires.
        issued = None
    if issued is None:
        answer = await anyio.to_thread.run_sync(_photo_upload_url, request, principal, body)
    else:
        answer = _photo_url(settings, issued.upload_id, issued.key, issued.url, body.content_type)
    # What FastAPI sends for the declared route's response_model.
    return Response(
        answer.model_dump_json(by_alias=True), status_code=201, media_type="application/json"
    )


def _is_json(content_type: str | None) -> bool:
    return content_type is not None and content_type.strip().lower() == "application/json"


router.add_api_route(
    "/photos/upload-url",
    photo_upload_url,
    methods=["POST"],
    status_code=201,
    response_model=PhotoUploadURL,
    route_class_override=fast_path_route(fast_photo_upload_url),
)


@router.post("/photos/upload-urls", status_code=201, response_model=PhotoUploadURLs)
def photo_upload_urls(
    request: Request,
    body: PhotoBatchRequest,
    principal: Principal = Depends(media_photographer),
) -> PhotoUploadURLs:
    """`count` (1-100) presigned PUTs for project photos, issued in one transaction: a batch
    of 2,000 photos costs 20 requests instead of 2,000."""
    settings, db, store = _deps(request)
    with db.transaction() as session:
        _may_upload(session, settings, principal, body.project_id)
        issued = service.create_photo_uploads(
            session,
            store,
            settings,
            photographer_id=principal.subject,
            project_id=body.project_id,
            count=body.count,
            now=datetime.now(UTC),
            content_type=body.content_type,
        )
    return PhotoUploadURLs(
        items=[
            _photo_url(settings, upload.id, upload.key, url, body.content_type)
            for upload, url in issued
        ]
    )


@router.post("/photographers/me/photos/upload-url", status_code=201, response_model=PhotoUploadURL)
def backoffice_photo_upload_url(
    request: Request,
    body: PhotoUploadRequest,
    principal: Principal = Depends(backoffice_photographer),
) -> PhotoUploadURL:
    """The same, for the backoffice photographer dashboard."""
    return _photo_upload_url(request, principal, body)


@router.post("/operators/me/profile-picture/upload-url", response_model=ProfilePictureUploadURL)
def profile_picture_upload_url(
    request: Request,
    body: UploadRequest | None = None,
    principal: Principal = Depends(operator),
) -> ProfilePictureUploadURL:
    """A presigned PUT for the operator's profile picture, and its permanent `fileUrl`."""
    settings, db, store = _deps(request)
    content_type = (body or UploadRequest()).content_type
    with db.transaction() as session:
        _, url, file_url = service.create_profile_picture_upload(
            session,
            store,
            settings,
            operator_id=principal.subject,
            now=datetime.now(UTC),
            content_type=content_type,
        )
    return ProfilePictureUploadURL(
        upload_url=url, headers=_put_headers(content_type), file_url=file_url
    )


def _put_headers(content_type: str) -> dict[str, str]:
    # The URL is signed for this type: a PUT with another `Content-Type` (or none) gets 403.
    return {"Content-Type": content_type}


# --- noticing uploads -------------------------------------------------------------------------


def _tracker(request: Request) -> UploadTracker:
    tracker: UploadTracker = request.app.state.uploads
    return tracker


def _complete_own(
    request: Request, upload_id: uuid.UUID, kind: UploadKind, principal: Principal
) -> PendingUpload:
    """Settle the caller's own upload now (someone else's is "not found")."""
    _, db, _ = _deps(request)
    with db.transaction() as session:
        upload = service.get_upload(session, upload_id=upload_id, kind=kind)
    if upload.owner_id != principal.subject:
        raise NotFound(f"{kind}_not_found", f"no {kind} {upload_id}")
    settled = _tracker(request).notice_id(upload_id, via=Signal.CLIENT)
    assert settled is not None
    if settled.status == UploadStatus.PENDING:
        raise Conflict("upload_incomplete", "nothing has been uploaded to the URL yet")
    return settled


@router.post("/selfie/{selfie_id}/complete", response_model=SelfieView)
def complete_selfie(
    selfie_id: uuid.UUID, request: Request, principal: Principal = Depends(user)
) -> SelfieView:
    """The client says its PUT is done: settle the selfie now instead of waiting for a signal."""
    settings, db, store = _deps(request)
    completed = _complete_own(request, selfie_id, UploadKind.SELFIE, principal)
    with db.transaction() as session:
        return service.selfie_view(session, store, settings, completed)


@router.post("/photos/{photo_id}/complete", response_model=PhotoView)
def complete_photo(
    photo_id: uuid.UUID,
    request: Request,
    principal: Principal = Depends(
        require_principal(AUDIENCE_MEDIA, AUDIENCE_BACKOFFICE, roles=["photographer"])
    ),
) -> PhotoView:
    """The photographer says the PUT is done: settle the photo now."""
    settings, db, store = _deps(request)
    completed = _complete_own(request, photo_id, UploadKind.PHOTO, principal)
    with db.transaction() as session:
        (view,) = service.photo_views(session, store, settings, [completed])
    return view


@router.post(
    "/storage/events",
    response_model=StorageEventsResult,
    openapi_extra={
        "requestBody": {"required": True, "content": {"application/json": {"schema": {}}}}
    },
)
async def storage_events(request: Request) -> StorageEventsResult:
    """Bucket event notifications (S3/MinIO records, SeaweedFS filer), shared-secret protected.

    The secret is checked before a byte of the body is read; the body is then read (within
    HTTP_MAX_BODY_BYTES) and parsed here, not declared as a parameter (FastAPI reads declared
    bodies before anything else runs): a malformed document is a 400 with a reason
    (`invalid_json`, `unknown_event_format`), never a 422 or a 500.
    """
    settings = request.app.state.settings
    _check_events_secret(request, settings)
    bucket = settings.s3_bucket if settings.storage_backend == "s3" else None
    records, keys = created_keys(parse_body(await request.body()), bucket=bucket)
    settled = await anyio.to_thread.run_sync(
        partial(_tracker(request).notice_keys, keys, via=Signal.WEBHOOK)
    )
    return StorageEventsResult(records=records, settled=settled)


def _check_events_secret(request: Request, settings: Settings) -> None:
    if not settings.storage_events_secret:
        raise Forbidden("storage_events_disabled", "STORAGE_EVENTS_SECRET is not configured")
    sent = request.headers.get("authorization", "")
    if sent.lower().startswith("bearer "):
        sent = sent[7:]
    # MinIO sends its `auth_token` as the whole header value; others send "Bearer <secret>".
    if not hmac.compare_digest(sent.strip().encode(), settings.storage_events_secret.encode()):
        raise Unauthenticated("invalid_events_secret", "missing or wrong storage events secret")


# --- reading back -----------------------------------------------------------------------------


@router.get("/photos/{photo_id}", response_model=PhotoView)
def get_photo(
    photo_id: uuid.UUID, request: Request, principal: Principal = Depends(photo_reader)
) -> PhotoView:
    """Status, size, dimensions and presigned GETs of a photo: its photographer or operators."""
    settings, db, store = _deps(request)
    with db.transaction() as session:
        photo = service.get_upload(session, upload_id=photo_id, kind=UploadKind.PHOTO)
        if not _is_operator(principal) and photo.owner_id != principal.subject:
            raise NotFound("photo_not_found", f"no photo {photo_id}")
        (view,) = service.photo_views(session, store, settings, [photo])
    return view


@router.delete("/photos/{photo_id}", status_code=204)
def delete_photo(
    photo_id: uuid.UUID, request: Request, principal: Principal = Depends(photo_reader)
) -> Response:
    """Erase a photo at once: original, derivatives, faces, matches (storage, database, face
    index). Its photographer, the project's owner, or an operator."""
    _, db, store = _deps(request)
    with db.transaction() as session:
        photo = service.get_upload(session, upload_id=photo_id, kind=UploadKind.PHOTO)
        if not _is_operator(principal) and photo.owner_id != principal.subject:
            assert photo.project_id is not None
            owner = projects.owner_of(session, project_id=photo.project_id)
            if owner != principal.subject:
                if projects.is_member(
                    session, project_id=photo.project_id, user_id=principal.subject
                ):
                    raise Forbidden(
                        "not_photo_owner",
                        "only its photographer, the project's owner or an operator may",
                    )
                raise NotFound("photo_not_found", f"no photo {photo_id}")
        erase_photos(
            session,
            store,
            request.app.state.face_index,
            photo_ids=[photo.id],
            now=datetime.now(UTC),
        )
    return Response(status_code=204)


@router.get("/projects/{project_id}/photos", response_model=PhotoPage)
def list_project_photos(
    project_id: uuid.UUID,
    request: Request,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    principal: Principal = Depends(photo_reader),
) -> PhotoPage:
    """A project's photos, newest first: all of them for operators, their own for photographers."""
    settings, db, store = _deps(request)
    with db.transaction() as session:
        rows, next_cursor = service.list_project_photos(
            session,
            project_id=project_id,
            photographer_id=None
            if _is_operator(principal)
            or projects.owner_of(session, project_id=project_id) == principal.subject
            else principal.subject,
            cursor=cursor,
            limit=limit,
        )
        items = service.photo_views(session, store, settings, rows)
    return PhotoPage(items=items, next_cursor=next_cursor)


# `?optional=true`: "none yet" is an expected answer (a page asking on load), not an error:
# 204 instead of 404, which browsers report as a failed load in their console.
OptionalQuery = Annotated[
    bool, Query(description="Answer 204 instead of 404 when there is none yet.")
]


def _none_yet(optional: bool, error: NotFound) -> Response:
    if optional:
        return Response(status_code=204)
    raise error


@router.get(
    "/me/selfie",
    response_model=SelfieView,
    responses={204: {"description": "No selfie yet, with `optional=true`."}},
)
def my_selfie(
    request: Request, principal: Principal = Depends(user), optional: OptionalQuery = False
) -> SelfieView | Response:
    """The user's latest selfie: its status, face processing, and a presigned GET."""
    settings, db, store = _deps(request)
    with db.transaction() as session:
        selfie = service.latest(session, owner_id=principal.subject, kind=UploadKind.SELFIE)
        if selfie is None:
            return _none_yet(optional, NotFound("selfie_not_found", "no selfie uploaded yet"))
        return service.selfie_view(session, store, settings, selfie)


@router.delete("/me/selfie", status_code=204)
def delete_my_selfie(request: Request, principal: Principal = Depends(user)) -> Response:
    """Erase the user's selfie and biometric data now (consent stays as it is)."""
    _, db, store = _deps(request)
    with db.transaction() as session:
        faces_service.erase_user(
            session, store, request.app.state.face_index, user_id=principal.subject
        )
    return Response(status_code=204)


@router.get("/me/photos", response_model=MyPhotos)
def my_photos(
    request: Request,
    project_id: Annotated[
        uuid.UUID | None, Query(alias="projectId", description="Only this project's photos.")
    ] = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 100,
    principal: Principal = Depends(consenting_user),
) -> MyPhotos:
    """Photos the user appears in, newest first, as presigned previews: across every project,
    or one (`projectId`). `GET /v1/projects` groups them by project."""
    settings, db, store = _deps(request)
    with db.transaction() as session:
        items, next_cursor = service.my_photos(
            session,
            store,
            settings,
            user_id=principal.subject,
            project_id=project_id,
            cursor=cursor,
            limit=limit,
        )
    return MyPhotos(items=items, next_cursor=next_cursor)


@router.delete("/me/photos/{photo_id}", status_code=204)
def not_me(photo_id: uuid.UUID, request: Request, principal: Principal = Depends(user)) -> Response:
    """ "Not me": hide a wrong match for good (reprocessing does not bring it back)."""
    _, db, _ = _deps(request)
    with db.transaction() as session:
        if not faces_service.reject_match(
            session, user_id=principal.subject, photo_id=photo_id, now=datetime.now(UTC)
        ):
            raise NotFound("photo_not_found", f"you are not matched in photo {photo_id}")
    return Response(status_code=204)


@router.get(
    "/operators/{operator_id}/profile-picture",
    response_model=Download,
    responses={204: {"description": "No picture yet, with `optional=true`."}},
)
def operator_profile_picture(
    operator_id: str,
    request: Request,
    principal: Principal = Depends(anyone),
    optional: OptionalQuery = False,
) -> Download | Response:
    """A presigned GET of an operator's profile picture, or 404."""
    settings, db, store = _deps(request)
    with db.transaction() as session:
        picture = service.latest(
            session,
            owner_id=operator_id,
            kind=UploadKind.PROFILE_PICTURE,
            status=UploadStatus.UPLOADED,
        )
    if picture is None:
        return _none_yet(
            optional,
            NotFound("profile_picture_not_found", f"operator {operator_id} has no picture"),
        )
    return service.download_upload(store, settings, picture)

"""HTTP surface of the Images server (authgear-images.md): upload, serve, issue signed URLs."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import RedirectResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from mediaplane.auth import AUDIENCE_BACKOFFICE, AUDIENCE_MEDIA, Principal, require_principal
from mediaplane.db import Database
from mediaplane.errors import InvalidInput, NotFound
from mediaplane.faces import build_locator
from mediaplane.images_api import service
from mediaplane.images_api.errors import AuthgearRoute
from mediaplane.images_api.multipart import receive_single_file
from mediaplane.images_api.schemas import AdminUploadRequest, UploadMetadata, UploadURLResult
from mediaplane.images_api.signing import P_METADATA, UploadSigner, first_values
from mediaplane.images_api.urls import check_ids, images_origin
from mediaplane.imaging import ImageLimits, sniff_format
from mediaplane.imaging.formats import SNIFF_BYTES
from mediaplane.ratelimit import RateLimit, hit
from mediaplane.settings import Settings
from mediaplane.storage import ObjectStore

router = APIRouter(route_class=AuthgearRoute, tags=["images"])


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _limits(settings: Settings) -> ImageLimits:
    # A request waits a bounded time for the decode budget, then answers 503 + Retry-After.
    return ImageLimits(
        max_pixels=settings.max_image_pixels,
        max_bytes=settings.images_max_bytes,
        decode_wait_seconds=settings.decode_wait_seconds,
    )


def _host(request: Request) -> str:
    return request.headers.get("host", "")


def _escaped_path(request: Request) -> str:
    raw = request.scope.get("raw_path")
    return raw.decode("latin-1") if raw else quote(request.url.path)


@router.post("/_images/{app_id}/{object_id}", response_model=UploadURLResult)
async def upload(app_id: str, object_id: str, request: Request) -> UploadURLResult:
    """Store the one `file` part of a signed multipart POST as `authgearimages:///APP/OBJECT`."""
    settings = _settings(request)
    db: Database = request.app.state.db
    store: ObjectStore = request.app.state.store
    signer: UploadSigner = request.app.state.images_signer
    ref = check_ids(app_id, object_id)
    pairs = signer.verify(
        method="POST",
        host=_host(request),
        escaped_path=_escaped_path(request),
        params=request.query_params.multi_items(),
        now=datetime.now(UTC),
    )
    encoded = first_values(pairs).get(P_METADATA)
    if not encoded:
        raise InvalidInput("invalid_metadata", f"missing {P_METADATA}")
    metadata = UploadMetadata.decode(encoded)

    def exists() -> bool:
        with db.transaction() as session:
            return service.exists(session, ref=ref)

    # Refuse before reading the body: the first file stays untouched and nothing is spooled.
    if await run_in_threadpool(exists):
        raise service.already_exists(ref)

    tmp_dir = settings.data_dir / "tmp"
    tmp_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=tmp_dir, prefix="upload-", suffix=".part") as tmp:
        await receive_single_file(
            request.stream(),
            content_type=request.headers.get("content-type"),
            dest=tmp,
            max_bytes=settings.images_max_bytes,
        )
        tmp.flush()

        def create() -> None:
            with db.transaction() as session:
                service.create(
                    session,
                    store,
                    ref=ref,
                    metadata=metadata,
                    upload=Path(tmp.name),
                    limits=_limits(settings),
                )

        await run_in_threadpool(create)
    return UploadURLResult.of(ref.images_url)


@router.get("/_images/{app_id}/{object_id}/{option}", response_model=None)
async def serve(app_id: str, object_id: str, option: str, request: Request) -> Response:
    """Public GET of `profile` (240×240, cached in storage) or `original` (stored bytes).

    The fast path (a row this process has seen, a variant in memory, or a revalidation) runs
    on the event loop with no database query, no storage read and no thread hand-off: rows
    and variants never change once written, so what is kept cannot go stale. Anything else
    (first sight of a row, a render, an original's bytes) runs in the thread pool.
    """
    settings = _settings(request)
    if settings.images_host:
        target = images_origin(settings.images_host)
        if target.split("://", 1)[1].lower() != _host(request).lower():
            return RedirectResponse(f"{target}{_escaped_path(request)}", status_code=302)
    if option not in service.OPTIONS:
        raise NotFound("unknown_option", f"unknown option {option!r}: use profile or original")
    ref = check_ids(app_id, object_id)
    store: ObjectStore = request.app.state.store
    known: service.KnownFiles = request.app.state.images_files
    row = known.peek(ref=ref)
    if row is None:
        row = await run_in_threadpool(known.get, request.app.state.db, ref=ref)

    etag = service.profile_etag(row) if option == "profile" else service.original_etag(row)
    cache = {
        "ETag": etag,
        "Cache-Control": f"public, max-age={settings.images_cache_max_age}, immutable",
        "X-Content-Type-Options": "nosniff",
    }
    if etag in _if_none_match(request):
        return Response(status_code=304, headers=cache)

    if option == "profile":
        variants: service.RenderedVariants = request.app.state.images_variants
        variant = variants.get(etag)
        if variant is None:
            variant = await run_in_threadpool(
                partial(
                    service.get_or_create_profile,
                    store,
                    row=row,
                    limits=_limits(settings),
                    faces=build_locator(settings),
                )
            )
            variants.put(variant)
        return Response(variant.data, media_type=variant.content_type, headers=cache)
    variants = request.app.state.images_variants
    kept = variants.get(etag)
    if kept is None and row.size <= variants.item_limit:
        kept = await run_in_threadpool(_small_original, store, ref.storage_key, etag)
        variants.put(kept)
    if kept is not None:
        headers = _disposition(kept.content_type, cache)
        return Response(kept.data, media_type=kept.content_type, headers=headers)
    return await run_in_threadpool(_original, store, ref.storage_key, cache)


def _if_none_match(request: Request) -> set[str]:
    header = request.headers.get("if-none-match", "")
    return {tag.strip() for tag in header.split(",") if tag.strip()}


def _small_original(store: ObjectStore, key: str, etag: str) -> service.Variant:
    data = store.read(key)
    fmt = sniff_format(data[:SNIFF_BYTES])
    return service.Variant(
        data=data, content_type=fmt.content_type if fmt else "application/octet-stream", etag=etag
    )


def _disposition(media_type: str, headers: dict[str, str]) -> dict[str, str]:
    """Images are shown inline; anything else that was stored is only ever a download."""
    inline = media_type != "application/octet-stream"
    return {**headers, "Content-Disposition": "inline" if inline else "attachment"}


def _original(store: ObjectStore, key: str, headers: dict[str, str]) -> Response:
    chunks = store.open(key)
    first = b""
    # Gather enough leading bytes to sniff; the rest streams untouched.
    for chunk in chunks:
        first += chunk
        if len(first) >= SNIFF_BYTES:
            break
    fmt = sniff_format(first)
    media_type = fmt.content_type if fmt else "application/octet-stream"

    def body() -> Iterator[bytes]:
        yield first
        yield from chunks

    return StreamingResponse(
        body(), media_type=media_type, headers=_disposition(media_type, headers)
    )


def app_id_for(request: Request) -> str:
    """The app a request's host belongs to (APP_HOSTS), else DEFAULT_APP_ID."""
    settings = _settings(request)
    host = _host(request).lower()
    return (
        settings.app_hosts.get(host)
        or settings.app_hosts.get(host.rsplit(":", 1)[0])
        or settings.default_app_id
    )


def _issue(request: Request, metadata: UploadMetadata) -> UploadURLResult:
    settings = _settings(request)
    signer: UploadSigner = request.app.state.images_signer
    ref = check_ids(app_id_for(request), service.new_object_id())
    host = _host(request)
    url = signer.sign_url(
        method="POST",
        origin=f"{request.url.scheme}://{host}",
        host=host,
        path=f"/_images/{ref.app_id}/{ref.object_id}",
        params=[(P_METADATA, metadata.encode())],
        now=datetime.now(UTC),
        expires_in=settings.images_upload_url_ttl_seconds,
    )
    return UploadURLResult.of(url)


# GET as well as POST on both issuing endpoints: Authgear's docs describe
# `GET /_api/admin/images/upload`, and its portal issues with GET.
@router.get("/api/images/upload", response_model=UploadURLResult)
@router.post("/api/images/upload", response_model=UploadURLResult)
def issue_user_upload_url(
    request: Request, principal: Principal = Depends(require_principal(AUDIENCE_MEDIA))
) -> UploadURLResult:
    """A signed upload URL for the calling end user; rate-limited per user."""
    settings = _settings(request)
    db: Database = request.app.state.db
    rule = RateLimit(settings.images_upload_rate_limit, settings.images_upload_rate_window_seconds)
    with db.transaction() as session:
        hit(session, bucket=f"images-upload:{principal.subject}", rule=rule)
    return _issue(request, UploadMetadata(uploaded_by="user", user_id=principal.subject))


@router.get("/_api/admin/images/upload", response_model=UploadURLResult)
@router.post("/_api/admin/images/upload", response_model=UploadURLResult)
def issue_admin_upload_url(
    request: Request,
    body: AdminUploadRequest | None = None,
    user_id: Annotated[str | None, Query(min_length=1, max_length=256)] = None,
    principal: Principal = Depends(require_principal(AUDIENCE_BACKOFFICE, roles=["operator"])),
) -> UploadURLResult:
    """A signed upload URL on behalf of `user_id` (JSON body, or `?user_id=` with GET), for
    operators (Admin API)."""
    target = body.user_id if body is not None else user_id
    if target is None:
        raise InvalidInput("validation_failed", "user_id is required (JSON body or ?user_id=)")
    return _issue(request, UploadMetadata(uploaded_by="admin_api", user_id=target))

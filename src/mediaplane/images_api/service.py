"""The Images server's logic: store an upload, find a file, render and cache its variants.

Routes own the transaction; these functions add and flush. No FastAPI here.
"""

from __future__ import annotations

import io
import secrets
import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from weakref import WeakValueDictionary

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from mediaplane.db import Database
from mediaplane.errors import Conflict, NotFound
from mediaplane.images_api.models import ImagesFile
from mediaplane.images_api.schemas import UploadMetadata
from mediaplane.images_api.urls import ImageRef
from mediaplane.imaging import (
    ImageLimits,
    RenderedImage,
    inspect_image,
    render_profile,
    sniff_format,
)
from mediaplane.imaging.budget import DECODE_BUDGET, HEADER_PREFIX_BYTES, decode_bytes_of_prefix
from mediaplane.imaging.profile import FaceLocator
from mediaplane.storage import ObjectNotFound, ObjectStore

# Bump when the `profile` rendering changes: cached variants live under a versioned key, and
# the ETag carries the version, so clients and caches never mix two renderings.
# 2: cut around the largest face, or by libvips' attention, instead of the centre.
PROFILE_VERSION = 2
OPTIONS = ("profile", "original")


@dataclass(frozen=True)
class Variant:
    data: bytes
    content_type: str
    etag: str


def new_object_id() -> str:
    """128 random bits, URL-safe."""
    return secrets.token_urlsafe(16).replace("-", "a").replace("_", "b")


def get(session: Session, *, ref: ImageRef) -> ImagesFile:
    row = session.scalars(
        select(ImagesFile).where(
            ImagesFile.app_id == ref.app_id, ImagesFile.object_id == ref.object_id
        )
    ).one_or_none()
    if row is None:
        raise NotFound("image_not_found", f"no image {ref.images_url}")
    return row


def exists(session: Session, *, ref: ImageRef) -> bool:
    try:
        get(session, ref=ref)
    except NotFound:
        return False
    return True


def create(
    session: Session,
    store: ObjectStore,
    *,
    ref: ImageRef,
    metadata: UploadMetadata,
    upload: Path,
    limits: ImageLimits,
) -> ImagesFile:
    """Check the uploaded file is an image within limits, then store it and its row.

    The row is inserted (and flushed) before the bytes are written: a concurrent upload of the
    same object id blocks on the unique index and then fails, so it can never overwrite the
    first one's object. If the write fails, the caller's rollback removes the row.
    """
    info = inspect_image(upload, limits)
    row = ImagesFile(
        id=str(uuid.uuid4()),
        app_id=ref.app_id,
        object_id=ref.object_id,
        size=info.size_bytes,
        metadata_=metadata.model_dump(exclude_none=True),
        created_at=datetime.now(UTC).replace(tzinfo=None),
    )
    session.add(row)
    try:
        session.flush()
    except IntegrityError:
        raise already_exists(ref) from None
    with upload.open("rb") as data:
        store.put(ref.storage_key, data, content_type=info.content_type)
    return row


def already_exists(ref: ImageRef) -> Conflict:
    return Conflict("image_already_exists", f"{ref.images_url} was already uploaded")


def profile_etag(row: ImagesFile) -> str:
    return f'"{row.id}-profile-v{PROFILE_VERSION}"'


def original_etag(row: ImagesFile) -> str:
    return f'"{row.id}"'


class KnownFiles:
    """Rows of `_images_file` seen by this process, so a public GET can skip the database.

    A row never changes once written (a second upload to the same id is refused), so a cached
    row cannot go stale. Bounded LRU; a miss is not cached, since the upload may come next.
    """

    def __init__(self, capacity: int = 10_000) -> None:
        self._rows: OrderedDict[ImageRef, ImagesFile] = OrderedDict()
        self._capacity = capacity
        self._lock = threading.Lock()

    def peek(self, *, ref: ImageRef) -> ImagesFile | None:
        """The row if this process has seen it, without touching the database."""
        with self._lock:
            row = self._rows.get(ref)
            if row is not None:
                self._rows.move_to_end(ref)
            return row

    def get(self, db: Database, *, ref: ImageRef) -> ImagesFile:
        row = self.peek(ref=ref)
        if row is not None:
            return row
        with db.transaction() as session:
            row = get(session, ref=ref)
            session.expunge(row)
        with self._lock:
            self._rows[ref] = row
            if len(self._rows) > self._capacity:
                self._rows.popitem(last=False)
        return row


class RenderedVariants:
    """Rendered `profile` variants, and originals of at most `item_limit` bytes, kept in
    memory by ETag, up to `capacity_bytes` in all (LRU).

    What an ETag names never changes (a row's bytes are written once; a variant's ETag names
    the rendering version), so nothing kept can go stale; storage stays the reference for
    other processes. A cached GET then costs no storage read and no thread hand-off.
    """

    def __init__(self, capacity_bytes: int) -> None:
        self._items: OrderedDict[str, Variant] = OrderedDict()
        self._capacity = capacity_bytes
        # An original may take a sixteenth of the cache, so a few large ones cannot flush
        # every avatar out.
        self.item_limit = capacity_bytes // 16
        self._size = 0
        self._lock = threading.Lock()

    def get(self, etag: str) -> Variant | None:
        with self._lock:
            variant = self._items.get(etag)
            if variant is not None:
                self._items.move_to_end(etag)
            return variant

    def put(self, variant: Variant) -> None:
        if len(variant.data) > self._capacity:
            return
        with self._lock:
            old = self._items.pop(variant.etag, None)
            if old is not None:
                self._size -= len(old.data)
            self._items[variant.etag] = variant
            self._size += len(variant.data)
            while self._size > self._capacity:
                _, dropped = self._items.popitem(last=False)
                self._size -= len(dropped.data)


# One render per variant at a time in this process: concurrent first requests for the same
# image wait for the first render instead of each decoding the original.
_rendering: WeakValueDictionary[str, threading.Lock] = WeakValueDictionary()
_rendering_guard = threading.Lock()


def _render_lock(key: str) -> threading.Lock:
    with _rendering_guard:
        lock = _rendering.get(key)
        if lock is None:
            lock = threading.Lock()
            _rendering[key] = lock
        return lock


def _render_profile(
    store: ObjectStore,
    *,
    key: str,
    size: int,
    limits: ImageLimits,
    faces: FaceLocator | None,
) -> RenderedImage:
    """Render with the original's bytes AND its decode inside one decode-budget reservation:
    a burst of first requests must not hold every original in memory while they queue. The
    reservation is sized from the original's leading bytes, read before the rest."""
    cost = size + decode_bytes_of_prefix(_prefix(store, key))
    with DECODE_BUDGET.reserve(cost, wait_seconds=limits.decode_wait_seconds):
        return render_profile(store.read(key), limits, faces=faces)


def _prefix(store: ObjectStore, key: str) -> bytes:
    chunks = store.open(key)
    prefix = b""
    try:
        for chunk in chunks:
            prefix += chunk
            if len(prefix) >= HEADER_PREFIX_BYTES:
                break
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()
    return prefix[:HEADER_PREFIX_BYTES]


def get_or_create_profile(
    store: ObjectStore, *, row: ImagesFile, limits: ImageLimits, faces: FaceLocator | None = None
) -> Variant:
    """The `profile` rendition: from the cache in storage, else rendered once and cached;
    cut around the largest face `faces` finds (imaging/profile.py)."""
    ref = ImageRef(row.app_id, row.object_id)
    key = ref.variant_key("profile", PROFILE_VERSION)
    try:
        data = store.read(key)
    except ObjectNotFound:
        with _render_lock(key):
            try:
                data = store.read(key)  # rendered by the request we waited for
            except ObjectNotFound:
                rendered = _render_profile(
                    store, key=ref.storage_key, size=row.size, limits=limits, faces=faces
                )
                data = rendered.data
                store.put(key, io.BytesIO(data), content_type=rendered.content_type)
    fmt = sniff_format(data)
    content_type = fmt.content_type if fmt else "application/octet-stream"
    return Variant(data=data, content_type=content_type, etag=profile_etag(row))

"""Object storage: the `ObjectStore` protocol, its two backends, and the one place that picks.

`build_store(settings)` returns a `LocalObjectStore` (files under DATA_DIR/objects or
STORAGE_URL=file:///PATH, presigned URLs served by `storage_router`) or an `S3ObjectStore`
(STORAGE_URL=s3://BUCKET on AWS S3, R2, MinIO, SeaweedFS...).
"""

from __future__ import annotations

from mediaplane.keys import load_or_create_secret
from mediaplane.settings import Settings
from mediaplane.storage.base import InvalidKey, ObjectInfo, ObjectNotFound, ObjectStore
from mediaplane.storage.local import LocalObjectStore
from mediaplane.storage.routes import storage_router
from mediaplane.storage.s3 import S3ObjectStore

__all__ = [
    "InvalidKey",
    "LocalObjectStore",
    "ObjectInfo",
    "ObjectNotFound",
    "ObjectStore",
    "S3ObjectStore",
    "build_store",
    "storage_router",
]


def build_store(settings: Settings) -> ObjectStore:
    """The object store the settings describe (S3 bucket created first if S3_CREATE_BUCKET)."""
    if settings.storage_backend == "local":
        secret = (
            settings.storage_signing_secret.encode()
            if settings.storage_signing_secret
            else load_or_create_secret(settings.data_dir, "storage-signing.key")
        )
        return LocalObjectStore(
            settings.local_storage_root,
            settings.public_url,
            secret=secret,
            max_put_bytes=settings.images_max_bytes,
        )
    store = S3ObjectStore(
        settings.s3_bucket,
        endpoint_url=settings.s3_endpoint_url,
        region=settings.s3_region,
        access_key_id=settings.s3_access_key_id,
        secret_access_key=settings.s3_secret_access_key,
        path_style=settings.s3_path_style,
    )
    if settings.s3_create_bucket:
        store.ensure_bucket()
    return store

"""Objects in an S3-compatible bucket (AWS S3, Cloudflare R2, MinIO, SeaweedFS).

Only calls every one of them implements are used: Put/Get/Head/Delete/ListObjectsV2, CopyObject,
multipart upload, HeadBucket/CreateBucket and SigV4 presigned URLs. Presigned PUT URLs sign the
Content-Type, so the server itself refuses an upload of another type (403); presigned GETs can
sign `response-content-type`, the one response header S3 lets a URL set (no
`X-Content-Type-Options`: objects are therefore also stored under their checked type).

The store accepts any PUT with a live signature, even after the upload it was issued for is
settled (`gates_presigned_writes = False`): the upload tracker watches such keys instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, BinaryIO

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from mediaplane.errors import Unavailable
from mediaplane.storage.base import ObjectInfo, ObjectNotFound
from mediaplane.storage.keys import validate_key, validate_prefix
from mediaplane.storage.local import CHUNK_SIZE, check_content_type, check_expires_in

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

MIB = 1024 * 1024


def _transfer_config() -> TransferConfig:
    # Parts of 8 MiB, 4 uploaded at once. An unseekable stream is read into memory part by part,
    # at most 2 parts ahead: about 40 MiB whatever its size. Seekable files are read lazily.
    # "classic": the same (pure Python) transfer code whether or not awscrt is installed.
    config = TransferConfig(
        multipart_threshold=8 * MIB,
        multipart_chunksize=8 * MIB,
        max_concurrency=4,
        use_threads=True,
        preferred_transfer_client="classic",
    )
    config.max_in_memory_upload_chunks = 2  # not a constructor argument of boto3's subclass
    return config


TRANSFER_CONFIG = _transfer_config()

_NOT_FOUND_CODES = frozenset({"404", "NoSuchKey", "NotFound"})
_NO_BUCKET_CODES = frozenset({"404", "NoSuchBucket", "NotFound"})


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


class _FullReader:
    """Read-only view of an unseekable stream that counts bytes and never reads short.

    s3transfer takes a short read for the end of the stream: a raw stream (a socket, a pipe)
    returning less than asked would be taken as small and uploaded with one PutObject, after
    reading the rest into memory at once.
    """

    def __init__(self, data: BinaryIO) -> None:
        self._data = data
        self.size = 0

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            chunk = self._data.read()
        else:
            parts: list[bytes] = []
            left = size
            while left > 0 and (part := self._data.read(min(left, CHUNK_SIZE))):
                parts.append(part)
                left -= len(part)
            chunk = b"".join(parts)
        self.size += len(chunk)
        return chunk


# Bucket CORS rules as S3 spells them (`AllowedOrigins`, `AllowedMethods`...).
CorsRules = list[dict[str, Any]]


class S3ObjectStore:
    """`ObjectStore` on one bucket of an S3-compatible service.

    Without keys, boto3's usual credential chain applies (environment, instance role...).
    """

    gates_presigned_writes = False

    def __init__(
        self,
        bucket: str,
        *,
        endpoint_url: str | None = None,
        region: str = "us-east-1",
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        path_style: bool = False,
    ) -> None:
        self.bucket = bucket
        self.region = region
        config = Config(
            signature_version="s3v4",
            region_name=region,
            s3={"addressing_style": "path" if path_style else "auto"},
            retries={"mode": "standard", "max_attempts": 4},
            connect_timeout=5,
            read_timeout=60,
            max_pool_connections=20,
            # botocore >= 1.36 adds CRC checksums to every upload by default; several
            # S3-compatible servers reject or mishandle them. Send them only when required.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        session = boto3.session.Session()  # not the global one: its creation is not thread-safe
        self._client: S3Client = session.client(
            "s3",
            endpoint_url=endpoint_url,
            aws_access_key_id=access_key_id,
            aws_secret_access_key=secret_access_key,
            config=config,
        )

    # --- ObjectStore ------------------------------------------------------------------------

    def put(self, key: str, data: BinaryIO, *, content_type: str) -> ObjectInfo:
        """Stream `data` to `key` (multipart above 8 MiB); all or nothing, last write wins."""
        validate_key(key)
        check_content_type(content_type)
        extra = {"ContentType": content_type}
        if data.seekable():
            start = data.tell()
            size = data.seek(0, 2) - start
            data.seek(start)
            self._client.upload_fileobj(
                data, self.bucket, key, ExtraArgs=extra, Config=TRANSFER_CONFIG
            )
        else:
            reader = _FullReader(data)
            self._client.upload_fileobj(
                reader,  # type: ignore[arg-type]  # s3transfer only needs read()
                self.bucket,
                key,
                ExtraArgs=extra,
                Config=TRANSFER_CONFIG,
            )
            size = reader.size
        return ObjectInfo(key=key, size=size, content_type=content_type)

    def open(self, key: str) -> Iterator[bytes]:
        """Stream the object in 1 MiB chunks; `ObjectNotFound` is raised by the call itself."""
        validate_key(key)
        try:
            response = self._client.get_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if _error_code(exc) in _NOT_FOUND_CODES:
                raise ObjectNotFound(key) from None
            raise
        return _chunks(response["Body"])

    def read(self, key: str) -> bytes:
        """The whole object in memory; raises `ObjectNotFound`."""
        return b"".join(self.open(key))

    def head(self, key: str) -> ObjectInfo | None:
        """Size and content type, or None when absent."""
        validate_key(key)
        try:
            response = self._client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if _error_code(exc) in _NOT_FOUND_CODES:
                return None
            raise
        return ObjectInfo(
            key=key,
            size=response["ContentLength"],
            content_type=response.get("ContentType"),
            etag=response.get("ETag"),
        )

    def copy(self, source: str, dest: str, *, content_type: str) -> ObjectInfo:
        """CopyObject (server side; objects up to 5 GB) with `content_type`; `ObjectNotFound`."""
        validate_key(source)
        validate_key(dest)
        try:
            response = self._client.copy_object(
                Bucket=self.bucket,
                Key=dest,
                CopySource={"Bucket": self.bucket, "Key": source},
                MetadataDirective="REPLACE",
                ContentType=check_content_type(content_type),
            )
        except ClientError as exc:
            if _error_code(exc) in _NOT_FOUND_CODES:
                raise ObjectNotFound(source) from None
            raise
        info = self.head(dest)
        if info is None:  # deleted between the copy and the HEAD: as if never copied
            raise ObjectNotFound(dest)
        # The HEAD's ETag, the form later HEADs compare with (SeaweedFS unquotes the copy's).
        copied = response.get("CopyObjectResult", {}).get("ETag")
        etag = info.etag or (f'"{copied.strip(chr(34))}"' if copied else None)
        return ObjectInfo(key=dest, size=info.size, content_type=content_type, etag=etag)

    def delete(self, key: str) -> None:
        """Remove the object; absent is not an error (S3 semantics)."""
        validate_key(key)
        self._client.delete_object(Bucket=self.bucket, Key=key)

    def list(self, prefix: str) -> Iterator[str]:
        """Keys under `prefix`, sorted by code point (UTF-8 byte order, as AWS S3 lists)."""
        validate_prefix(prefix)
        # Sorted here, not trusted to the server: SeaweedFS lists directory by directory
        # (`p/c/d` before `p/c-e`). Keys only, so memory stays small for any sane prefix.
        return iter(sorted(self._list(prefix)))

    def presign_put(self, key: str, *, content_type: str, expires_in: int) -> str:
        """A SigV4 URL to PUT exactly `content_type` bytes to until expiry."""
        return self._client.generate_presigned_url(
            "put_object",
            Params={
                "Bucket": self.bucket,
                "Key": validate_key(key),
                "ContentType": check_content_type(content_type),
            },
            ExpiresIn=check_expires_in(expires_in),
        )

    def presign_get(self, key: str, *, expires_in: int, content_type: str | None = None) -> str:
        """A SigV4 URL to GET the object from until expiry; `content_type` is signed in as
        `response-content-type`, which the server answers with."""
        params: dict[str, Any] = {"Bucket": self.bucket, "Key": validate_key(key)}
        if content_type:
            params["ResponseContentType"] = check_content_type(content_type)
        return self._client.generate_presigned_url(
            "get_object", Params=params, ExpiresIn=check_expires_in(expires_in)
        )

    def check(self) -> None:
        """Raise `Unavailable` unless the bucket answers HeadBucket with these credentials."""
        try:
            self._client.head_bucket(Bucket=self.bucket)
        except (ClientError, BotoCoreError) as exc:
            raise Unavailable(
                "storage_unavailable", f"bucket {self.bucket!r} is not reachable: {exc}"
            ) from exc

    # --- setup ------------------------------------------------------------------------------

    def cors_rules(self) -> CorsRules:
        """The bucket's CORS rules as S3 returns them ([] when it has none)."""
        try:
            response = self._client.get_bucket_cors(Bucket=self.bucket)
        except ClientError as exc:
            if _error_code(exc) == "NoSuchCORSConfiguration":
                return []
            raise
        return [dict(rule) for rule in response.get("CORSRules", [])]

    def put_cors_rules(self, rules: CorsRules) -> None:
        """Replace the bucket's CORS rules (an empty list removes them)."""
        if not rules:
            self._client.delete_bucket_cors(Bucket=self.bucket)
            return
        self._client.put_bucket_cors(
            Bucket=self.bucket,
            CORSConfiguration={"CORSRules": rules},  # type: ignore[typeddict-item]
        )

    def ensure_bucket(self) -> None:
        """Create the bucket if it does not exist (dev and tests; production buckets are
        provisioned with their policies elsewhere)."""
        try:
            self._client.head_bucket(Bucket=self.bucket)
            return
        except ClientError as exc:
            if _error_code(exc) not in _NO_BUCKET_CODES:
                raise
        kwargs: dict[str, Any] = {"Bucket": self.bucket}
        if self.region != "us-east-1":  # us-east-1 rejects an explicit LocationConstraint
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": self.region}
        try:
            self._client.create_bucket(**kwargs)
        except ClientError as exc:
            if _error_code(exc) not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise

    def _list(self, prefix: str) -> Iterator[str]:
        paginator = self._client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                yield item["Key"]


def _chunks(body: Any) -> Iterator[bytes]:
    try:
        yield from body.iter_chunks(CHUNK_SIZE)
    finally:
        body.close()

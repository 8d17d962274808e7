"""The `ObjectStore` protocol: the only way Mediaplane touches object bytes.

Two implementations satisfy it (local disk, S3-compatible); `storage.build_store(settings)`
picks one. Every implementation passes the shared contract suite in `tests/storage/`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO, Protocol, runtime_checkable

from mediaplane.errors import InvalidInput, NotFound


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    content_type: str | None = None
    # What the store calls this version of the bytes (S3: quoted MD5 of a single-part upload;
    # local disk: the same, kept in the sidecar). None when the store cannot tell.
    etag: str | None = None


class ObjectNotFound(NotFound):
    def __init__(self, key: str) -> None:
        super().__init__("object_not_found", f"no object at {key!r}")
        self.key = key


class InvalidKey(InvalidInput):
    def __init__(self, key: str) -> None:
        super().__init__("invalid_key", f"invalid object key {key!r}")


@runtime_checkable
class ObjectStore(Protocol):
    """Object bytes by key. Keys are `/`-separated, relative, without `..` segments."""

    gates_presigned_writes: bool
    """True when presigned PUTs reach this service, which can refuse one (local disk); False
    when the store accepts any PUT with a live signature (S3), so a URL outlives its upload."""

    def put(self, key: str, data: BinaryIO, *, content_type: str) -> ObjectInfo:
        """Store `data` (read to its end, streamed) at `key`; all or nothing, last write wins."""
        ...

    def open(self, key: str) -> Iterator[bytes]:
        """Stream the object's bytes in chunks; `ObjectNotFound` is raised by the call itself,
        before any chunk, so a caller can answer 404 before it starts a response."""
        ...

    def read(self, key: str) -> bytes:
        """The whole object in memory (for images under the byte limit); `ObjectNotFound`."""
        ...

    def head(self, key: str) -> ObjectInfo | None:
        """Size and content type, or None when absent."""
        ...

    def copy(self, source: str, dest: str, *, content_type: str) -> ObjectInfo:
        """Copy the object at `source` to `dest` inside the store (no bytes through this process
        on S3), labelled `content_type`; `ObjectNotFound`. The result carries the copy's ETag."""
        ...

    def delete(self, key: str) -> None:
        """Remove the object; absent is not an error."""
        ...

    def list(self, prefix: str) -> Iterator[str]:
        """Keys under `prefix`, sorted."""
        ...

    def presign_put(self, key: str, *, content_type: str, expires_in: int) -> str:
        """An absolute URL a client may PUT to, once signed for this content type, until expiry."""
        ...

    def presign_get(self, key: str, *, expires_in: int, content_type: str | None = None) -> str:
        """An absolute URL a client may GET the object from until expiry; `content_type`, when
        given, is the Content-Type the response carries whatever the object was stored with."""
        ...

    def check(self) -> None:
        """Raise if the store is unreachable (readiness probe)."""
        ...

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

    def delete(self, key: str) -> None:
        """Remove the object; absent is not an error."""
        ...

    def list(self, prefix: str) -> Iterator[str]:
        """Keys under `prefix`, sorted."""
        ...

    def presign_put(self, key: str, *, content_type: str, expires_in: int) -> str:
        """An absolute URL a client may PUT to, once signed for this content type, until expiry."""
        ...

    def presign_get(self, key: str, *, expires_in: int) -> str:
        """An absolute URL a client may GET the object from until expiry."""
        ...

    def check(self) -> None:
        """Raise if the store is unreachable (readiness probe)."""
        ...

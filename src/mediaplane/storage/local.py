"""Objects as plain files under one directory, with presigned URLs served by this service.

Layout under `root`:

    <key>                      the object's bytes, exactly as uploaded
    .mediaplane/tmp/put-*      uploads in progress (renamed into place when complete)
    .mediaplane/meta/<key>     JSON sidecar: {"content_type": ..., "etag": ...}

Content types live in a sidecar tree that mirrors the object tree, so an operator can copy the
objects out as ordinary files, and a key conflicts in the sidecar tree exactly when it conflicts
in the object tree. The sidecar is published before the object, so whoever sees an object also
sees its content type.

Presigned URLs point at the service's own `/_storage/{key}` route (`storage.routes`), signed
with HMAC-SHA256 over method, key, expiry and content type (for PUT the type the client must
send; for GET, when given, the type the response is labelled with).

Presigned PUTs reach this service, so it can refuse writes (`gates_presigned_writes`): the
storage route asks the app's write gate (the upload tracker) before accepting any byte.
"""

from __future__ import annotations

import builtins
import contextlib
import hashlib
import hmac
import json
import math
import os
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import BinaryIO
from urllib.parse import quote, urlencode

from mediaplane.errors import Conflict, Forbidden, InvalidInput, PayloadTooLarge, Unavailable
from mediaplane.storage.base import ObjectInfo, ObjectNotFound
from mediaplane.storage.keys import RESERVED_SEGMENT, validate_key, validate_prefix

CHUNK_SIZE = 1024 * 1024
STALE_TEMP_SECONDS = 24 * 3600
"""Temp files older than this are leftovers of a crashed process; removed at start."""

SIGNATURE_VERSION = "mediaplane-storage-v1"
METHOD_PARAM = "X-Mp-Method"
EXPIRES_PARAM = "X-Mp-Expires"
CONTENT_TYPE_PARAM = "X-Mp-Content-Type"
SIGNATURE_PARAM = "X-Mp-Signature"


def check_content_type(content_type: str) -> str:
    """Return `content_type` if it can travel in an HTTP header, else raise `InvalidInput`."""
    if not content_type or any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in content_type):
        raise InvalidInput("invalid_content_type", f"invalid content type {content_type!r}")
    return content_type


def check_expires_in(expires_in: int) -> int:
    """Return `expires_in` if it is a positive number of seconds, else raise `InvalidInput`."""
    if expires_in <= 0:
        raise InvalidInput("invalid_expiry", "expires_in must be a positive number of seconds")
    return expires_in


class LocalObjectWriter:
    """One object being written: bytes go to a temp file, `commit()` publishes them atomically.

    Used as a context manager, leaving the block without `commit()` (an error, a disconnect)
    removes the temp file: a broken upload leaves nothing behind.
    """

    def __init__(
        self, store: LocalObjectStore, key: str, *, content_type: str, max_bytes: int | None
    ) -> None:
        self._store = store
        self.key = key
        self.content_type = content_type
        self.max_bytes = max_bytes
        self.size = 0
        self._md5 = hashlib.md5(usedforsecurity=False)
        fd, name = tempfile.mkstemp(dir=store.tmp_dir, prefix="put-")
        self._tmp = Path(name)
        self._file = os.fdopen(fd, "wb")
        self._done = False

    @property
    def etag(self) -> str:
        """Quoted MD5 of the bytes written, as S3 gives for a single-part upload."""
        return f'"{self._md5.hexdigest()}"'

    def write(self, chunk: bytes) -> None:
        """Append `chunk`; raises `PayloadTooLarge` once more than `max_bytes` arrived."""
        if self.max_bytes is not None and self.size + len(chunk) > self.max_bytes:
            raise PayloadTooLarge("too_large", f"the object is larger than {self.max_bytes} bytes")
        self._file.write(chunk)
        self._md5.update(chunk)
        self.size += len(chunk)

    def commit(self) -> ObjectInfo:
        """Publish the object under its key (last write wins) and describe it."""
        self._file.close()
        meta = json.dumps({"content_type": self.content_type, "etag": self.etag}).encode()
        try:
            self._store._publish_meta(self.key, meta)
            self._store._publish(self._tmp, self._store.path_of(self.key), key=self.key)
        finally:
            self.abort()
        return ObjectInfo(
            key=self.key, size=self.size, content_type=self.content_type, etag=self.etag
        )

    def abort(self) -> None:
        """Discard what was written; harmless after `commit()` or a previous `abort()`."""
        if self._done:
            return
        self._done = True
        self._file.close()
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> LocalObjectWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.abort()


class LocalObjectStore:
    """`ObjectStore` on a local directory; presigned URLs are served by `storage.routes`.

    `max_put_bytes` bounds what a presigned PUT may upload (S3 presigned PUTs cannot bound
    it; the image pipeline checks sizes again). `put()` from trusted code is not bounded.

    Limitation of a file system: a key cannot be both an object and a "directory" of other
    keys (`a` and `a/b`); writing the second raises `Conflict` (`key_conflict`).
    """

    gates_presigned_writes = True

    def __init__(self, root: Path, public_url: str, secret: bytes, max_put_bytes: int) -> None:
        if not secret:
            raise ValueError("the storage signing secret must not be empty")
        self.root = Path(root)
        self.public_url = public_url.rstrip("/")
        self.max_put_bytes = max_put_bytes
        self._secret = secret
        self.tmp_dir = self.root / RESERVED_SEGMENT / "tmp"
        self.meta_dir = self.root / RESERVED_SEGMENT / "meta"
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        self.meta_dir.mkdir(parents=True, exist_ok=True)
        self._remove_stale_temp_files()

    # --- ObjectStore ------------------------------------------------------------------------

    def put(self, key: str, data: BinaryIO, *, content_type: str) -> ObjectInfo:
        """Store `data` (read to its end, streamed) at `key`; all or nothing, last write wins."""
        with self.writer(key, content_type=content_type) as writer:
            while chunk := data.read(CHUNK_SIZE):
                writer.write(chunk)
            return writer.commit()

    def open(self, key: str) -> Iterator[bytes]:
        """Stream the object in 1 MiB chunks; `ObjectNotFound` is raised by the call itself."""
        return self.open_with_info(key)[1]

    def read(self, key: str) -> bytes:
        """The whole object in memory; raises `ObjectNotFound`."""
        return b"".join(self.open(key))

    def head(self, key: str) -> ObjectInfo | None:
        """Size and content type, or None when absent."""
        path = self.path_of(key)
        try:
            size = path.stat().st_size if path.is_file() else None
        except OSError:
            size = None
        if size is None:
            return None
        meta = self._meta(key)
        return ObjectInfo(
            key=key, size=size, content_type=_text(meta, "content_type"), etag=_text(meta, "etag")
        )

    def copy(self, source: str, dest: str, *, content_type: str) -> ObjectInfo:
        """Copy `source` to `dest` through a temp file, published atomically; `ObjectNotFound`."""
        chunks = self.open(source)
        with self.writer(dest, content_type=content_type) as writer:
            for chunk in chunks:
                writer.write(chunk)
            return writer.commit()

    def delete(self, key: str) -> None:
        """Remove the object and its sidecar; absent is not an error."""
        path = self.path_of(key)
        if path.is_dir():  # other keys live "under" this one; it is not an object
            return
        for file, top in ((path, self.root), (self._meta_path(key), self.meta_dir)):
            with contextlib.suppress(FileNotFoundError, NotADirectoryError):
                file.unlink()
            self._prune_empty_dirs(file.parent, top)

    def list(self, prefix: str) -> Iterator[str]:
        """Keys under `prefix`, sorted by code point (the order S3 lists in), lazily."""
        validate_prefix(prefix)
        base = prefix.rpartition("/")[0]
        start = self.root / base if base else self.root
        if not start.is_dir():
            return iter(())
        return (
            key
            for key in self._walk(start, f"{base}/" if base else "", prefix)
            if key.startswith(prefix)
        )

    def presign_put(self, key: str, *, content_type: str, expires_in: int) -> str:
        """A URL of this service a client may PUT exactly `content_type` bytes to until expiry."""
        return self._presign("PUT", key, expires_in=expires_in, content_type=content_type)

    def presign_get(self, key: str, *, expires_in: int, content_type: str | None = None) -> str:
        """A URL of this service a client may GET the object from until expiry, its response
        labelled `content_type` when given (signed, so a client cannot change it)."""
        return self._presign("GET", key, expires_in=expires_in, content_type=content_type or "")

    def check(self) -> None:
        """Raise `Unavailable` unless the root is a writable directory."""
        if not (self.tmp_dir.is_dir() and os.access(self.tmp_dir, os.W_OK | os.X_OK)):
            raise Unavailable("storage_unavailable", f"{self.root} is not a writable directory")

    # --- used by the storage routes ---------------------------------------------------------

    def writer(
        self, key: str, *, content_type: str, max_bytes: int | None = None
    ) -> LocalObjectWriter:
        """Start writing an object chunk by chunk (the presigned PUT route streams into it)."""
        return LocalObjectWriter(
            self,
            validate_key(key),
            content_type=check_content_type(content_type),
            max_bytes=max_bytes,
        )

    def open_with_info(self, key: str) -> tuple[ObjectInfo, Iterator[bytes]]:
        """The object's description and its chunks, both from the same open file."""
        path = self.path_of(key)
        try:
            file = path.open("rb")
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise ObjectNotFound(key) from None
        size = os.fstat(file.fileno()).st_size
        info = ObjectInfo(key=key, size=size, content_type=_text(self._meta(key), "content_type"))
        return info, _chunks(file)

    def verify_presigned(
        self,
        method: str,
        key: str,
        params: Mapping[str, str],
        *,
        content_type: str | None = None,
        now: float | None = None,
    ) -> None:
        """Raise `Forbidden` unless `params` are a live signature of `method` on `key`.

        For PUT, `content_type` is the request's and must equal the signed one, as S3 does.
        Reasons: `invalid_signature`, `expired_signature`, `content_type_mismatch`.
        """
        invalid = Forbidden("invalid_signature", "the URL signature is missing or invalid")
        signed_type = params.get(CONTENT_TYPE_PARAM, "")
        expires_text = params.get(EXPIRES_PARAM, "")
        if params.get(METHOD_PARAM) != method or not expires_text.isdigit():
            raise invalid
        expected = self._signature(method, key, int(expires_text), signed_type)
        given = params.get(SIGNATURE_PARAM, "")
        if not hmac.compare_digest(expected.encode(), given.encode()):
            raise invalid
        if (time.time() if now is None else now) > int(expires_text):
            raise Forbidden("expired_signature", "the URL has expired")
        if method == "PUT" and content_type != signed_type:
            raise Forbidden(
                "content_type_mismatch",
                f"the URL was signed for Content-Type {signed_type!r}, not {content_type!r}",
            )

    def path_of(self, key: str) -> Path:
        """Where the object of `key` lives (the key is validated first)."""
        return self.root / validate_key(key)

    # --- internals ------------------------------------------------------------------------------

    def _presign(self, method: str, key: str, *, expires_in: int, content_type: str) -> str:
        validate_key(key)
        # Rounded up so a URL lives at least `expires_in` seconds.
        expires = math.ceil(time.time()) + check_expires_in(expires_in)
        params = {METHOD_PARAM: method, EXPIRES_PARAM: str(expires)}
        if method == "PUT" or content_type:
            params[CONTENT_TYPE_PARAM] = check_content_type(content_type)
        params[SIGNATURE_PARAM] = self._signature(method, key, expires, content_type)
        return f"{self.public_url}/_storage/{quote(key, safe='/')}?{urlencode(params)}"

    def _signature(self, method: str, key: str, expires: int, content_type: str) -> str:
        # Keys hold no newline and expiry is digits only, so the fields cannot run together.
        message = "\n".join((SIGNATURE_VERSION, method, key, str(expires), content_type))
        return hmac.new(self._secret, message.encode(), hashlib.sha256).hexdigest()

    def _meta_path(self, key: str) -> Path:
        return self.meta_dir / validate_key(key)

    def _meta(self, key: str) -> dict[str, object]:
        try:
            meta = json.loads(self._meta_path(key).read_bytes())
        except (OSError, ValueError):
            return {}
        return meta if isinstance(meta, dict) else {}

    def _publish_meta(self, key: str, meta: bytes) -> None:
        fd, name = tempfile.mkstemp(dir=self.tmp_dir, prefix="meta-")
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(meta)
            self._publish(Path(name), self._meta_path(key), key=key)
        finally:
            Path(name).unlink(missing_ok=True)

    def _publish(self, src: Path, dst: Path, *, key: str) -> None:
        """Atomically rename `src` to `dst`, creating parents; `Conflict` on a file/dir clash."""
        for _attempt in range(3):
            try:
                dst.parent.mkdir(parents=True, exist_ok=True)
                os.replace(src, dst)
                return
            except FileNotFoundError:
                continue  # a concurrent delete pruned the parent directory just now
            except (FileExistsError, NotADirectoryError, IsADirectoryError):
                raise Conflict(
                    "key_conflict",
                    f"{key!r} clashes with an existing key: on local disk a key cannot also "
                    "be the prefix directory of other keys",
                ) from None
        raise Unavailable("storage_busy", f"could not publish {dst}")

    def _prune_empty_dirs(self, directory: Path, top: Path) -> None:
        while directory != top and top in directory.parents:
            try:
                directory.rmdir()
            except OSError:  # not empty (or already gone)
                return
            directory = directory.parent

    def _walk(self, directory: Path, rel: str, prefix: str) -> Iterator[str]:
        # Sorting a directory's entries by name, with "/" appended to sub-directories, gives the
        # same order as sorting full keys, so the listing is sorted without being held in memory.
        entries: builtins.list[tuple[str, os.DirEntry[str]]] = []
        with os.scandir(directory) as scan:
            for entry in scan:
                if not rel and entry.name == RESERVED_SEGMENT:
                    continue
                if entry.is_dir(follow_symlinks=False):
                    entries.append((entry.name + "/", entry))
                elif entry.is_file(follow_symlinks=False):
                    entries.append((entry.name, entry))
        for name, entry in sorted(entries, key=lambda item: item[0]):
            key = rel + name
            if not (key.startswith(prefix) or prefix.startswith(key)):
                continue
            if name.endswith("/"):
                yield from self._walk(Path(entry.path), key, prefix)
            else:
                yield key

    def _remove_stale_temp_files(self) -> None:
        # Only old ones: other processes (API, workers) may be writing into the same root.
        cutoff = time.time() - STALE_TEMP_SECONDS
        for path in self.tmp_dir.iterdir():
            with contextlib.suppress(OSError):
                if path.stat().st_mtime < cutoff:
                    path.unlink()


def _text(meta: Mapping[str, object], name: str) -> str | None:
    value = meta.get(name)
    return value if isinstance(value, str) else None


def _chunks(file: BinaryIO) -> Iterator[bytes]:
    with file:
        while chunk := file.read(CHUNK_SIZE):
            yield chunk

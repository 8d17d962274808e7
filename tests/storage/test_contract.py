"""The contract every `ObjectStore` passes: each case runs on local disk and on SeaweedFS S3.

Presigned URLs are exercised over HTTP the way a client uses them: against the S3 server for
`S3ObjectStore`, against the storage routes for `LocalObjectStore`. Local-only HTTP behaviour
(size limit, interrupted uploads, write listeners) is at the end.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import logging
import os
import time
import tracemalloc
from collections.abc import Callable, Iterator, MutableMapping
from typing import Any, BinaryIO, cast
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

import anyio
import httpx
import pytest
from fastapi.testclient import TestClient

from mediaplane.errors import Conflict
from mediaplane.storage import (
    InvalidKey,
    LocalObjectStore,
    ObjectInfo,
    ObjectNotFound,
    ObjectStore,
)
from tests.storage.conftest import LOCAL_MAX_PUT_BYTES, LOCAL_PUBLIC_URL, storage_app

MIB = 1024 * 1024


def described(info: ObjectInfo | None) -> ObjectInfo | None:
    """`info` without its ETag (the contract on ETags is tested on its own)."""
    return None if info is None else dataclasses.replace(info, etag=None)


def md5_etag(data: bytes) -> str:
    return f'"{hashlib.md5(data).hexdigest()}"'


def put_bytes(
    store: ObjectStore, key: str, data: bytes, content_type: str = "text/plain"
) -> ObjectInfo:
    return store.put(key, io.BytesIO(data), content_type=content_type)


class GeneratedStream(io.RawIOBase):
    """`size` deterministic bytes produced on demand: an upload that is never whole in memory."""

    def __init__(self, size: int) -> None:
        self._left = size
        self._counter = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        view = memoryview(buffer).cast("B")
        n = min(len(view), self._left, 64 * 1024)
        block = hashlib.sha256(self._counter.to_bytes(8, "big")).digest() * (64 * 1024 // 32)
        view[:n] = block[:n]
        self._counter += 1
        self._left -= n
        return n


def generated_sha256(size: int) -> str:
    digest = hashlib.sha256()
    stream = GeneratedStream(size)
    while chunk := stream.read(MIB):
        digest.update(chunk)
    return digest.hexdigest()


def tampered(url: str) -> str:
    """`url` with one hex digit of its signature flipped."""
    parts = urlsplit(url)
    params = parse_qsl(parts.query, keep_blank_values=True)
    for i, (name, value) in enumerate(params):
        if name.lower().endswith("signature"):
            params[i] = (name, value[:-1] + ("0" if value[-1] != "0" else "1"))
    return urlunsplit(parts._replace(query=urlencode(params)))


def assert_refused(response: httpx.Response, store: ObjectStore, code: str) -> None:
    """403, and for the local store the problem+json `code` (S3 speaks its own XML)."""
    assert response.status_code == 403, response.text
    if isinstance(store, LocalObjectStore):
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["code"] == code


# --- bytes in, bytes out ---------------------------------------------------------------------


def test_put_then_read_and_open_give_the_bytes_back(object_store: ObjectStore) -> None:
    data = os.urandom(2 * MIB + 123)

    info = put_bytes(object_store, "photos/a b/ü.bin", data, "application/octet-stream")

    assert described(info) == ObjectInfo("photos/a b/ü.bin", len(data), "application/octet-stream")
    assert object_store.read("photos/a b/ü.bin") == data
    chunks = list(object_store.open("photos/a b/ü.bin"))
    assert b"".join(chunks) == data
    assert all(len(chunk) <= MIB for chunk in chunks)


def test_open_and_read_of_an_absent_key_raise_object_not_found(object_store: ObjectStore) -> None:
    with pytest.raises(ObjectNotFound):
        object_store.open("nothing/here")  # raised by the call, before any iteration
    with pytest.raises(ObjectNotFound):
        object_store.read("nothing/here")


def test_large_streamed_put_keeps_memory_bounded(object_store: ObjectStore) -> None:
    # S3 keeps up to ~34 MiB of parts in memory whatever the size, local disk ~1 MiB.
    size, bound = 64 * MIB, 40 * MIB

    tracemalloc.start()
    try:
        # Raw on purpose: its reads are short (64 KiB), like a pipe or socket.
        stream = cast(BinaryIO, GeneratedStream(size))
        info = object_store.put("big.bin", stream, content_type="video/mp4")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()

    assert info.size == size
    assert peak < bound, f"peak {peak / MIB:.1f} MiB for a {size // MIB} MiB upload"
    streamed = hashlib.sha256()
    for chunk in object_store.open("big.bin"):
        streamed.update(chunk)
    assert streamed.hexdigest() == generated_sha256(size)


def test_head_gives_size_and_content_type(object_store: ObjectStore) -> None:
    put_bytes(object_store, "p/photo.jpg", b"\xff\xd8jpeg", "image/jpeg")

    assert described(object_store.head("p/photo.jpg")) == ObjectInfo("p/photo.jpg", 6, "image/jpeg")


def test_head_of_an_absent_key_is_none(object_store: ObjectStore) -> None:
    assert object_store.head("p/missing.jpg") is None


def test_delete_removes_and_is_idempotent(object_store: ObjectStore) -> None:
    put_bytes(object_store, "d/x", b"x")

    object_store.delete("d/x")
    object_store.delete("d/x")
    object_store.delete("never/was")

    assert object_store.head("d/x") is None
    assert list(object_store.list("")) == []


def test_list_by_prefix_is_sorted(object_store: ObjectStore) -> None:
    for key in ["p/b", "p/a", "p/c/d", "p-z", "pz", "q/x", "p/c-e"]:
        put_bytes(object_store, key, b".")

    assert list(object_store.list("p/")) == ["p/a", "p/b", "p/c-e", "p/c/d"]
    assert list(object_store.list("p/c")) == ["p/c-e", "p/c/d"]
    assert list(object_store.list("p")) == ["p-z", "p/a", "p/b", "p/c-e", "p/c/d", "pz"]
    assert list(object_store.list("")) == ["p-z", "p/a", "p/b", "p/c-e", "p/c/d", "pz", "q/x"]
    assert list(object_store.list("nothing/")) == []


BAD_KEYS = ["../x", "/abs", "a//b", "a/./b", "a/..", "", "a/", "a\\b", "a\x00b", "a\nb", "é" * 513]


def test_invalid_keys_are_rejected(object_store: ObjectStore) -> None:
    for key in BAD_KEYS:
        with pytest.raises(InvalidKey):
            put_bytes(object_store, key, b"x")
        with pytest.raises(InvalidKey):
            object_store.head(key)
        with pytest.raises(InvalidKey):
            object_store.open(key)
        with pytest.raises(InvalidKey):
            object_store.delete(key)
        with pytest.raises(InvalidKey):
            object_store.presign_put(key, content_type="image/png", expires_in=60)
        with pytest.raises(InvalidKey):
            object_store.presign_get(key, expires_in=60)
    with pytest.raises(InvalidKey):
        list(object_store.list("../"))
    assert list(object_store.list("")) == []


def test_overwrite_last_write_wins(object_store: ObjectStore) -> None:
    put_bytes(object_store, "o/k", b"first version", "text/plain")
    put_bytes(object_store, "o/k", b"second", "image/png")

    assert object_store.read("o/k") == b"second"
    assert described(object_store.head("o/k")) == ObjectInfo("o/k", 6, "image/png")
    assert list(object_store.list("o/")) == ["o/k"]


def test_head_gives_the_etag_of_a_single_part_write(
    object_store: ObjectStore, http: httpx.Client
) -> None:
    put_bytes(object_store, "e/a.jpg", b"first", "image/jpeg")
    assert object_store.head("e/a.jpg").etag == md5_etag(b"first")  # type: ignore[union-attr]
    url = object_store.presign_put("e/a.jpg", content_type="image/jpeg", expires_in=300)
    assert http.put(url, content=b"second", headers={"Content-Type": "image/jpeg"}).is_success
    assert object_store.head("e/a.jpg").etag == md5_etag(b"second")  # type: ignore[union-attr]


def test_copy_duplicates_the_bytes_under_another_key_and_type(object_store: ObjectStore) -> None:
    data = os.urandom(100_000)
    put_bytes(object_store, "c/original.jpg", data, "image/jpeg")

    info = object_store.copy("c/original.jpg", "c/aside.jpg", content_type="image/png")

    assert described(info) == ObjectInfo("c/aside.jpg", len(data), "image/png")
    assert info.etag == md5_etag(data)
    assert object_store.read("c/aside.jpg") == data
    assert object_store.head("c/aside.jpg").content_type == "image/png"  # type: ignore[union-attr]
    put_bytes(object_store, "c/original.jpg", b"overwritten", "text/html")
    assert object_store.read("c/aside.jpg") == data  # a copy, not a link
    with pytest.raises(ObjectNotFound):
        object_store.copy("c/absent.jpg", "c/x.jpg", content_type="image/jpeg")
    assert object_store.head("c/x.jpg") is None


def test_check_passes_on_a_working_store(object_store: ObjectStore) -> None:
    object_store.check()


# --- presigned URLs, over HTTP --------------------------------------------------------------


def test_presigned_put_with_the_signed_content_type_stores_the_object(
    object_store: ObjectStore, http: httpx.Client
) -> None:
    url = object_store.presign_put("up/photo 1.png", content_type="image/png", expires_in=300)

    response = http.put(url, content=b"\x89PNG data", headers={"Content-Type": "image/png"})

    assert response.status_code == 200, response.text
    assert response.headers["etag"].strip('"') == hashlib.md5(b"\x89PNG data").hexdigest()
    assert object_store.read("up/photo 1.png") == b"\x89PNG data"
    assert described(object_store.head("up/photo 1.png")) == ObjectInfo(
        "up/photo 1.png", 9, "image/png"
    )


def test_presigned_put_with_another_content_type_is_refused(
    object_store: ObjectStore, http: httpx.Client
) -> None:
    url = object_store.presign_put("up/x.png", content_type="image/png", expires_in=300)

    response = http.put(url, content=b"<svg/>", headers={"Content-Type": "image/svg+xml"})

    assert_refused(response, object_store, "content_type_mismatch")
    assert object_store.head("up/x.png") is None


def test_presigned_put_with_a_tampered_signature_is_refused(
    object_store: ObjectStore, http: httpx.Client
) -> None:
    url = object_store.presign_put("up/x.png", content_type="image/png", expires_in=300)

    response = http.put(tampered(url), content=b"data", headers={"Content-Type": "image/png"})

    assert_refused(response, object_store, "invalid_signature")
    assert object_store.head("up/x.png") is None


def test_presigned_get_gives_the_bytes_and_content_type(
    object_store: ObjectStore, http: httpx.Client
) -> None:
    data = os.urandom(3 * MIB)
    put_bytes(object_store, "down/pic.webp", data, "image/webp")

    response = http.get(object_store.presign_get("down/pic.webp", expires_in=300))

    assert response.status_code == 200
    assert response.content == data
    assert response.headers["content-type"] == "image/webp"
    assert_refused(
        http.get(tampered(object_store.presign_get("down/pic.webp", expires_in=300))),
        object_store,
        "invalid_signature",
    )


def test_presigned_get_answers_with_the_content_type_it_was_signed_for(
    object_store: ObjectStore, http: httpx.Client
) -> None:
    put_bytes(object_store, "down/real.png", b"\x89PNG\r\n\x1a\n data", "image/jpeg")

    url = object_store.presign_get("down/real.png", expires_in=300, content_type="image/png")
    response = http.get(url)

    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    # The type is part of the signature: a client cannot ask for text/html instead.
    assert "image%2Fpng" in url
    forged = url.replace("image%2Fpng", "text%2Fhtml")
    assert_refused(http.get(forged), object_store, "invalid_signature")


def test_presigned_get_of_an_absent_object_is_404(
    object_store: ObjectStore, http: httpx.Client
) -> None:
    response = http.get(object_store.presign_get("down/absent", expires_in=300))

    assert response.status_code == 404


def test_presigned_urls_expire(object_store: ObjectStore, http: httpx.Client) -> None:
    put_bytes(object_store, "exp/old", b"old")
    put_url = object_store.presign_put("exp/new", content_type="text/plain", expires_in=1)
    get_url = object_store.presign_get("exp/old", expires_in=1)

    time.sleep(2.2)  # the only sleeping test: expiry has a one-second resolution

    response = http.put(put_url, content=b"late", headers={"Content-Type": "text/plain"})
    assert_refused(response, object_store, "expired_signature")
    assert_refused(http.get(get_url), object_store, "expired_signature")
    assert object_store.head("exp/new") is None


# --- local store only: its HTTP side ---------------------------------------------------------


def temp_files(store: LocalObjectStore) -> list[str]:
    return sorted(os.listdir(store.tmp_dir))


def asgi_put(
    store: LocalObjectStore,
    url: str,
    headers: dict[str, str],
    chunks: list[bytes],
    *,
    hang_up: bool,
) -> int:
    """PUT through the storage app at the ASGI level, the body arriving in `chunks`; with
    `hang_up` the client disconnects after them instead of ending the body. Returns the status."""
    parts = urlsplit(url)
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "PUT",
        "scheme": "http",
        "server": ("testserver", 80),
        "client": ("127.0.0.1", 50000),
        "root_path": "",
        "path": unquote(parts.path),
        "raw_path": parts.path.encode(),
        "query_string": parts.query.encode(),
        "headers": [(name.lower().encode(), value.encode()) for name, value in headers.items()],
    }
    messages: list[MutableMapping[str, Any]] = [
        {"type": "http.request", "body": chunk, "more_body": True} for chunk in chunks
    ]
    messages.append(
        {"type": "http.disconnect"}
        if hang_up
        else {"type": "http.request", "body": b"", "more_body": False}
    )
    statuses: list[int] = []

    async def receive() -> MutableMapping[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    async def run() -> None:
        await storage_app(store)(scope, receive, send)

    anyio.run(run)
    return statuses[0]


def test_local_put_over_the_limit_is_413_and_leaves_nothing(local: LocalObjectStore) -> None:
    url = local.presign_put("big/x.bin", content_type="application/octet-stream", expires_in=60)
    headers = {"Content-Type": "application/octet-stream"}
    too_much = b"x" * (LOCAL_MAX_PUT_BYTES + 1)

    with TestClient(storage_app(local), base_url=LOCAL_PUBLIC_URL) as client:
        declared = client.put(url, content=too_much, headers=headers)  # Content-Length known
    streamed = asgi_put(local, url, headers, [b"x" * 65536] * 17, hang_up=False)  # chunked

    assert declared.status_code == 413
    assert declared.json()["code"] == "too_large"
    assert streamed == 413
    assert local.head("big/x.bin") is None
    assert temp_files(local) == []


def test_local_put_interrupted_midway_leaves_nothing(local: LocalObjectStore) -> None:
    put_bytes(local, "cut/x.bin", b"previous", "application/octet-stream")
    url = local.presign_put("cut/x.bin", content_type="application/octet-stream", expires_in=60)
    headers = {"Content-Type": "application/octet-stream", "Content-Length": "900000"}

    status = asgi_put(local, url, headers, [b"y" * 65536] * 5, hang_up=True)

    assert status == 499  # nobody is left to read it; what matters is what is on disk

    assert local.read("cut/x.bin") == b"previous"
    assert temp_files(local) == []


def test_local_put_notifies_listeners_once(
    local: LocalObjectStore, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[ObjectInfo] = []

    def broken_listener(info: ObjectInfo) -> None:
        raise RuntimeError("listener bug")

    app = storage_app(local)
    app.state.object_written_listeners = [broken_listener, seen.append]
    url = local.presign_put("events/e.jpg", content_type="image/jpeg", expires_in=60)

    with caplog.at_level(logging.ERROR), TestClient(app, base_url=LOCAL_PUBLIC_URL) as client:
        response = client.put(url, content=b"jpeg!", headers={"Content-Type": "image/jpeg"})

    assert response.status_code == 200
    assert [described(info) for info in seen] == [ObjectInfo("events/e.jpg", 5, "image/jpeg")]
    assert "listener bug" in caplog.text


def test_local_storage_routes_are_404_without_a_local_store(local: LocalObjectStore) -> None:
    app = storage_app(local)
    app.state.store = object()
    url = local.presign_get("any/key", expires_in=60)

    with TestClient(app, base_url=LOCAL_PUBLIC_URL) as client:
        response = client.get(url)

    assert response.status_code == 404


class ClosingGate:
    """A write gate that takes `limit` bytes until `close()`, then refuses like a settled upload."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open = True
        self.published: list[str] = []

    def _check(self) -> None:
        if not self.open:
            raise Conflict("upload_already_settled", "settled")

    def admit_write(self, key: str) -> int:
        self._check()
        return self.limit

    def publish_write(self, key: str, publish: Callable[[], ObjectInfo]) -> ObjectInfo:
        self._check()
        self.published.append(key)
        return publish()


def test_local_put_asks_the_write_gate_before_reading_and_before_publishing(
    local: LocalObjectStore,
) -> None:
    gate = ClosingGate(limit=10)
    app = storage_app(local)
    app.state.object_write_gate = gate
    url = local.presign_put("gated/a.jpg", content_type="image/jpeg", expires_in=60)
    headers = {"Content-Type": "image/jpeg"}
    with TestClient(app, base_url=LOCAL_PUBLIC_URL) as client:
        too_big = client.put(url, content=b"x" * 11, headers=headers)
        assert too_big.status_code == 413 and too_big.json()["code"] == "too_large"
        assert client.put(url, content=b"first", headers=headers).status_code == 200
        gate.open = False

        def body() -> Iterator[bytes]:
            raise AssertionError("the body of a refused write must not be read")
            yield b""

        refused = client.put(url, content=body(), headers=headers)
        assert refused.status_code == 409 and refused.json()["code"] == "upload_already_settled"

        # Settled while the body streamed: the bytes are discarded at publication.
        gate.open = True

        def closing_body() -> Iterator[bytes]:
            yield b"sec"
            gate.open = False
            yield b"ond"

        late = client.put(url, content=closing_body(), headers=headers)
        assert late.status_code == 409
    assert local.read("gated/a.jpg") == b"first"
    assert gate.published == ["gated/a.jpg"]
    assert list(local.tmp_dir.iterdir()) == []

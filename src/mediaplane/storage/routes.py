"""`/_storage/{key}`: where local-disk presigned URLs lead (the S3 service serves its own).

PUT first asks `app.state.object_write_gate` (a `WriteGate`; the upload tracker in the app)
whether the key takes a write at all and how many bytes — before reading any byte of the body —,
streams the body to a temp file (never whole in memory), refuses more than that limit, and
publishes through the gate, which checks again atomically with the publication: a URL that
outlives its upload (settled, rejected, erased) cannot write. Then it tells
`app.state.object_written_listeners` (sync callables taking the `ObjectInfo`, run in a thread;
their errors are logged, not raised) — the local stand-in for an S3 bucket notification.
Without a gate (the bare storage app of the contract tests) every signed PUT is taken; with
a gate that has `refuse_write` (the upload tracker: every upload is an image), a body that is
not an image is answered 415 (`not_an_image`), nothing kept, and its upload settled rejected.

GET streams the object with the content type signed into the URL (else the stored one) and
`X-Content-Type-Options: nosniff`, so a browser never reads an object as another type.
Only mounted usefully when `app.state.store` is a `LocalObjectStore`; otherwise 404.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from functools import partial
from typing import Protocol

import anyio
import anyio.to_thread
from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse

from mediaplane.errors import NotFound, PayloadTooLarge, UnsupportedMediaType
from mediaplane.faults import outage_of
from mediaplane.imaging.formats import SNIFF_BYTES, ImageFormat, sniff_format, sniff_unsupported
from mediaplane.storage.base import ObjectInfo
from mediaplane.storage.local import CHUNK_SIZE, CONTENT_TYPE_PARAM, LocalObjectStore
from mediaplane.web import ProblemRoute

log = logging.getLogger(__name__)

storage_router = APIRouter(route_class=ProblemRoute)


class WriteGate(Protocol):
    """Who decides whether a presigned PUT may write (the upload tracker, in the app)."""

    def admit_write(self, key: str) -> int:
        """The most bytes a write to `key` may bring; raises a `MediaplaneError` to refuse."""
        ...

    def publish_write(self, key: str, publish: Callable[[], ObjectInfo]) -> ObjectInfo:
        """Run `publish` only if `key` still takes a write, atomically with that check."""
        ...


def _local_store(request: Request) -> LocalObjectStore:
    store = getattr(request.app.state, "store", None)
    if not isinstance(store, LocalObjectStore):
        raise NotFound("not_found", "this service does not serve objects itself")
    return store


@storage_router.put("/_storage/{key:path}")
async def put_object(request: Request, key: str) -> Response:
    """Upload through a presigned PUT URL: 200 with an ETag, or problem+json."""
    store = _local_store(request)
    store.verify_presigned(
        "PUT", key, request.query_params, content_type=request.headers.get("content-type")
    )
    gate: WriteGate | None = getattr(request.app.state, "object_write_gate", None)
    limit = store.max_put_bytes
    if gate is not None:
        limit = min(limit, await anyio.to_thread.run_sync(gate.admit_write, key))
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge("too_large", f"the object is larger than {limit} bytes")

    writer = await anyio.to_thread.run_sync(
        partial(store.writer, key, content_type=request.headers["content-type"], max_bytes=limit)
    )
    try:
        # Server chunks are small (~64 KiB); batching them to 1 MiB saves thread hops.
        buffer = bytearray()
        head = b""
        size = 0
        async for chunk in request.stream():
            if len(head) < SNIFF_BYTES:
                head += chunk[: SNIFF_BYTES - len(head)]
            size += len(chunk)
            buffer += chunk
            if len(buffer) >= CHUNK_SIZE:
                await anyio.to_thread.run_sync(writer.write, bytes(buffer))
                buffer.clear()
        await anyio.to_thread.run_sync(writer.write, bytes(buffer))
        refuse = getattr(gate, "refuse_write", None)  # the gate of uploads, all images
        if refuse is not None and sniff_format(head) is None:
            await _refuse_non_image(refuse, key, head, size)
        if gate is None:
            info = await anyio.to_thread.run_sync(writer.commit)
        else:
            info = await anyio.to_thread.run_sync(gate.publish_write, key, writer.commit)
    finally:
        # A client gone mid-body (`ClientDisconnect`) is logged by the app's one handler.
        # Shielded: on cancellation (client gone, shutdown) the temp file must still go.
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(writer.abort)

    listeners: Iterable[Callable[[ObjectInfo], object]] = getattr(
        request.app.state, "object_written_listeners", []
    )
    for listener in listeners:
        try:
            await anyio.to_thread.run_sync(listener, info)
        except Exception as exc:
            if outage_of(exc) is None:
                log.exception("object_written listener %r failed for %s", listener, info.key)
            else:
                # The object is stored; the sweeper settles it once the database is back.
                log.warning("upload of %s noticed later: %s", info.key, type(exc).__name__)
    return Response(status_code=200, headers={"ETag": writer.etag})


async def _refuse_non_image(refuse: Callable[..., None], key: str, head: bytes, size: int) -> None:
    """Local disk has the bytes in hand: a non-image is answered 415 at once (nothing kept),
    and its upload settled `rejected` (`not_an_image`), as it would be once noticed on S3."""
    await anyio.to_thread.run_sync(partial(refuse, key, reason="not_an_image", size=size))
    named = sniff_unsupported(head)
    what = f"a {named} file" if named else "not an image"
    accepted = ", ".join(f.content_type for f in ImageFormat)
    raise UnsupportedMediaType("not_an_image", f"the body is {what}; send one of {accepted}")


@storage_router.get("/_storage/{key:path}")
async def get_object(request: Request, key: str) -> StreamingResponse:
    """Download through a presigned GET URL, streamed with the signed (else stored) type."""
    store = _local_store(request)
    store.verify_presigned("GET", key, request.query_params)
    info, chunks = await anyio.to_thread.run_sync(store.open_with_info, key)
    signed_type = request.query_params.get(CONTENT_TYPE_PARAM)
    return StreamingResponse(
        chunks,
        media_type=signed_type or info.content_type or "application/octet-stream",
        headers={"Content-Length": str(info.size), "X-Content-Type-Options": "nosniff"},
    )

"""`/_storage/{key}`: where local-disk presigned URLs lead (the S3 service serves its own).

PUT streams the body to a temp file (never whole in memory), refuses more than the store's
`max_put_bytes`, publishes atomically, then tells `app.state.object_written_listeners` (sync
callables taking the `ObjectInfo`, run in a thread; their errors are logged, not raised) — the
local stand-in for an S3 bucket notification. GET streams the object with its content type.
Only mounted usefully when `app.state.store` is a `LocalObjectStore`; otherwise 404.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from functools import partial

import anyio
import anyio.to_thread
from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse
from starlette.requests import ClientDisconnect

from mediaplane.errors import InvalidInput, NotFound, PayloadTooLarge
from mediaplane.faults import outage_of
from mediaplane.storage.base import ObjectInfo
from mediaplane.storage.local import CHUNK_SIZE, LocalObjectStore
from mediaplane.web import ProblemRoute

log = logging.getLogger(__name__)

storage_router = APIRouter(route_class=ProblemRoute)


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
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > store.max_put_bytes:
        raise PayloadTooLarge("too_large", f"the object is larger than {store.max_put_bytes} bytes")

    writer = await anyio.to_thread.run_sync(
        partial(
            store.writer,
            key,
            content_type=request.headers["content-type"],
            max_bytes=store.max_put_bytes,
        )
    )
    try:
        # Server chunks are small (~64 KiB); batching them to 1 MiB saves thread hops.
        buffer = bytearray()
        async for chunk in request.stream():
            buffer += chunk
            if len(buffer) >= CHUNK_SIZE:
                await anyio.to_thread.run_sync(writer.write, bytes(buffer))
                buffer.clear()
        await anyio.to_thread.run_sync(writer.write, bytes(buffer))
        info = await anyio.to_thread.run_sync(writer.commit)
    except ClientDisconnect:
        raise InvalidInput("upload_interrupted", "the client went away mid-upload") from None
    finally:
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


@storage_router.get("/_storage/{key:path}")
async def get_object(request: Request, key: str) -> StreamingResponse:
    """Download through a presigned GET URL, streamed with the stored content type."""
    store = _local_store(request)
    store.verify_presigned("GET", key, request.query_params)
    info, chunks = await anyio.to_thread.run_sync(store.open_with_info, key)
    return StreamingResponse(
        chunks,
        media_type=info.content_type or "application/octet-stream",
        headers={"Content-Length": str(info.size)},
    )

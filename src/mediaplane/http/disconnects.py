"""A client that goes away mid-request is an event, not a server error.

Starlette raises `ClientDisconnect` from `request.stream()` when the socket closes before the
body is complete. Uncaught, uvicorn logs it as "Exception in ASGI application" with a traceback,
which pages someone for a phone that lost its signal. Routes let it propagate (after cleaning
up what they started, in `finally`), and this one handler logs it as what it is.
"""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import Response

log = logging.getLogger("mediaplane.http")

# nginx's code for "client closed request": nobody reads it, but access logs and metrics do.
CLIENT_CLOSED_REQUEST = 499


async def client_disconnected(request: Request, exc: Exception) -> Response:
    """Log the disconnect (method and path, never the query: it may carry a signature)."""
    client = request.client
    log.info(
        "client disconnected mid-request: %s %s",
        request.method,
        request.url.path,
        extra={"client": f"{client.host}:{client.port}" if client else None},
    )
    return Response(status_code=CLIENT_CLOSED_REQUEST)

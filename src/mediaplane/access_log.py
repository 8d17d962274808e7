"""One access-log line per request, and the request id a user can quote.

`AccessLog` is a pure ASGI middleware (no `BaseHTTPMiddleware`: it must not buffer the streamed
bodies of uploads and downloads). It takes the caller's `X-Request-Id` when it looks like an id,
or makes one; returns it in the `X-Request-Id` response header; binds it to every log line
written while the request runs; and, once the response is sent, logs one line: method, path,
query with signatures redacted, status, duration in ms and the request id. Error renderers put
the same id in error bodies (`current_request_id()`).
"""

from __future__ import annotations

import re
import time
import uuid
from contextvars import ContextVar
from urllib.parse import parse_qsl, urlencode

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

REQUEST_ID_HEADER = b"x-request-id"

# Ids from proxies and clients are echoed into headers and logs: short, printable, no spaces.
VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9._:@/+=-]{1,128}")

# Presigned URLs carry their credentials in the query (X-Amz-Signature, X-Amz-Credential,
# X-Amz-Security-Token, X-Mp-Signature, x-authgear-signature...): their values never reach a log.
SECRET_PARAM_MARKERS = ("signature", "credential", "token", "secret", "password", "key")
REDACTED = "REDACTED"

_request_id: ContextVar[str | None] = ContextVar("request_id", default=None)

log = structlog.get_logger("mediaplane.access")


def current_request_id() -> str | None:
    """The id of the request being handled, for error bodies; None outside a request."""
    return _request_id.get()


def request_id_of(scope: Scope) -> str | None:
    """The id `AccessLog` gave this request (also readable after it returned)."""
    state = scope.get("state") or {}
    value = state.get("request_id") if isinstance(state, dict) else None
    return value if isinstance(value, str) else None


def incoming_request_id(scope: Scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == REQUEST_ID_HEADER:
            text = value.decode("latin-1").strip()
            return text if VALID_REQUEST_ID.fullmatch(text) else None
    return None


def redact_query(query: str) -> str:
    """The query string with the values of credential-like parameters replaced."""
    if not query:
        return ""
    pairs = parse_qsl(query, keep_blank_values=True)
    return urlencode(
        [
            (name, REDACTED if any(m in name.lower() for m in SECRET_PARAM_MARKERS) else value)
            for name, value in pairs
        ],
        safe="/:",
    )


class AccessLog:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = incoming_request_id(scope) or uuid.uuid4().hex
        # Starlette's `request.state` is this dict: handlers outside this middleware (the 500
        # handler of ServerErrorMiddleware) read the id from it.
        scope.setdefault("state", {})["request_id"] = request_id
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [
                    (k, v) for k, v in message.get("headers", ()) if k.lower() != REQUEST_ID_HEADER
                ]
                headers.append((REQUEST_ID_HEADER, request_id.encode("latin-1")))
                message = {**message, "headers": headers}
            await send(message)

        token = _request_id.set(request_id)
        try:
            with structlog.contextvars.bound_contextvars(request_id=request_id):
                await self.app(scope, receive, send_with_id)
        finally:
            _request_id.reset(token)
            fields: dict[str, object] = {
                "method": scope.get("method", ""),
                "path": scope.get("path", ""),
                "status": status,
                "duration_ms": round((time.perf_counter() - started) * 1000, 1),
                "request_id": request_id,
            }
            query = redact_query(scope.get("query_string", b"").decode("latin-1"))
            if query:
                fields["query"] = query
            log.info("request", **fields)

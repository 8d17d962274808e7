"""The request limits and the body limit of every route that does not stream its own body.

FastAPI reads and parses a JSON body before any dependency runs, authentication included: without
a limit, anyone could make the server hold an arbitrarily large body in memory. `BodyLimit` sits
in front of the routes and counts the bytes of `http.request` messages as the app pulls them: a
declared `Content-Length` above the limit is refused before a byte is read, and a body that
grows past it (chunked, or lying about its length) is cut at the limit. Either way the client
gets a 413 in its API's error shape and the connection is closed, so nothing more is read.

The upload routes (local-disk `PUT /_storage/...`, the Images server's multipart POST) stream
their bodies to disk and enforce their own per-kind limits; they are listed as `StreamedRoute`s.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mediaplane.errors import MediaplaneError, PayloadTooLarge
from mediaplane.settings import Settings


@dataclass(frozen=True)
class HttpLimits:
    """Every request limit, read from settings once (docs/security.md, "HTTP limits")."""

    max_body_bytes: int
    max_header_bytes: int
    header_timeout_seconds: float
    body_timeout_seconds: float
    keep_alive_seconds: int
    max_connections: int

    @classmethod
    def from_settings(cls, settings: Settings) -> HttpLimits:
        return cls(
            max_body_bytes=settings.http_max_body_bytes,
            max_header_bytes=settings.http_max_header_bytes,
            header_timeout_seconds=settings.http_header_timeout_seconds,
            body_timeout_seconds=settings.http_body_timeout_seconds,
            keep_alive_seconds=settings.http_keep_alive_seconds,
            max_connections=settings.http_max_connections,
        )


@dataclass(frozen=True)
class StreamedRoute:
    """A route that streams its body to disk under its own limit: `BodyLimit` lets it through."""

    method: str
    path_prefix: str

    def matches(self, scope: Scope) -> bool:
        return bool(scope["method"] == self.method and scope["path"].startswith(self.path_prefix))


ErrorRenderer = Callable[[Scope, MediaplaneError], Response]


class _BodyTooLarge(Exception):
    """Raised from `receive` once the body passed the limit; the app is not meant to catch it."""


def declared_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None


class BodyLimit:
    """ASGI middleware: at most `max_bytes` of request body reach the app, else a 413.

    `render` gives the 413 the shape of the API the path belongs to.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_bytes: int,
        streamed: Sequence[StreamedRoute],
        render: ErrorRenderer,
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.streamed = tuple(streamed)
        self.render = render

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or any(route.matches(scope) for route in self.streamed):
            await self.app(scope, receive, send)
            return
        declared = declared_length(scope)
        if declared is not None and declared > self.max_bytes:
            await self._refuse(scope, send)
            return

        received = 0
        over = False
        started = False

        async def limited_receive() -> Message:
            nonlocal received, over
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    over = True
                    raise _BodyTooLarge
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if over:
                # Whatever the app makes of the cut body (FastAPI turns it into a 400), the
                # answer is ours.
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not over:
                raise
        if over and not started:
            await self._refuse(scope, send)

    async def _refuse(self, scope: Scope, send: Send) -> None:
        error = PayloadTooLarge(
            "body_too_large",
            f"the request body is larger than {self.max_bytes} bytes",
        )
        response = self.render(scope, error)
        # Closing the connection is what stops the rest of the body from being read at all.
        response.headers["Connection"] = "close"
        await response(scope, _no_body, send)


async def _no_body() -> Message:
    return {"type": "http.disconnect"}

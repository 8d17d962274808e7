"""uvicorn with the connection guards it lacks, so slow and idle clients cannot hold it.

uvicorn (0.54, httptools) closes a connection idle *between* requests after
`timeout_keep_alive`, but nothing else: a connection that never sends a byte, or dribbles its
request head a byte at a time, or stops in the middle of a body, is held forever; httptools puts
no bound on the size of a request head; and `limit_concurrency` answers 503 to new requests once
full instead of dropping the idle sockets that fill it. `GuardedHttpToolsProtocol` adds, per
connection (timers checked lazily, one handle per connection, no work per byte):

- a head deadline: the request line and headers must be complete within
  `header_timeout_seconds` of the connection (or of the previous response) — else 408 and close
  (a connection that sent nothing is just closed);
- a head size limit: more than `max_header_bytes` before the end of the head is a 431 and close;
- a body idle timeout: a request body that goes silent for `body_timeout_seconds` while the app
  waits for it is cut (the app sees a client disconnect), and so is a client that stops reading
  its response for that long;
- a connection cap: past `max_connections`, the connections that have waited longest without a
  request in flight are closed, so idle sockets never lock real clients out.
"""

from __future__ import annotations

import asyncio
import dataclasses
import heapq
import itertools
import logging
import resource
import socket
from typing import Any, ClassVar

import uvicorn
from prometheus_client import Counter
from starlette.types import ASGIApp
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from mediaplane.http.limits import HttpLimits

log = logging.getLogger(__name__)

# One line per closed connection would let an attacker fill the logs: they are counted here
# (in /metrics) and logged at DEBUG.
CLOSED = Counter(
    "mediaplane_http_connections_closed_total",
    "Connections closed by the HTTP guards, by reason.",
    ["reason"],
)

# File descriptors kept for everything that is not a client connection: the database pool,
# object files, the embedded servers' pipes, the listening socket.
RESERVED_FDS = 256


def _raw_response(status: bytes, reason: str) -> bytes:
    body = f'{{"code":"{reason}"}}'.encode()
    return (
        b"HTTP/1.1 " + status + b"\r\ncontent-type: application/json\r\n"
        b"content-length: " + str(len(body)).encode() + b"\r\nconnection: close\r\n\r\n" + body
    )


HEAD_TOO_LARGE = _raw_response(b"431 Request Header Fields Too Large", "headers_too_large")
HEAD_TIMEOUT = _raw_response(b"408 Request Timeout", "request_head_timeout")
OVER_CAPACITY = _raw_response(b"503 Service Unavailable", "too_many_connections")


_WAITING_TURNS = itertools.count()


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol plus a head deadline and size limit, a body idle timeout
    and a connection cap (see the module docstring). `limits` is set by `guarded_protocol`."""

    limits: ClassVar[HttpLimits]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._loop = asyncio.get_event_loop()
        self._awaiting_head = True
        self._head_bytes = 0
        self._waiting_since = 0.0
        self._waiting_turn = 0
        self._in_body = False
        self._body_seen_at = 0.0
        self._guard: asyncio.TimerHandle | None = None
        self._write_guard: asyncio.TimerHandle | None = None
        self._closed = False

    # --- connection life --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._await_head()
        if len(self.connections) > self.limits.max_connections:
            self._make_room()

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self._cancel_guard()
        self._cancel_write_guard()
        super().connection_lost(exc)

    def pause_writing(self) -> None:
        # The client stopped reading the response: it has `body_timeout_seconds` to resume.
        super().pause_writing()
        if self._write_guard is None and not self._closed:
            self._write_guard = self._loop.call_later(
                self.limits.body_timeout_seconds, self._write_stalled
            )

    def resume_writing(self) -> None:
        self._cancel_write_guard()
        super().resume_writing()

    def _cancel_write_guard(self) -> None:
        if self._write_guard is not None:
            self._write_guard.cancel()
            self._write_guard = None

    def _write_stalled(self) -> None:
        self._write_guard = None
        if not self._closed and self.flow.write_paused:
            CLOSED.labels("response_stalled").inc()
            log.debug("closing a connection that stopped reading its response")
            self.transport.abort()

    def data_received(self, data: bytes) -> None:
        if self._closed or self.transport.is_closing():
            return
        if self._in_body:
            self._body_seen_at = self._loop.time()
        if self._awaiting_head:
            self._head_bytes += len(data)
        super().data_received(data)
        # Counted before parsing, so a chunk that also carries body bytes may overcount: only
        # a head that is still incomplete after this chunk is judged on the raw count.
        if self._awaiting_head and self._head_bytes > self.limits.max_header_bytes:
            self._reject(HEAD_TOO_LARGE, "head_too_large")

    # --- parser callbacks -------------------------------------------------------------------

    def on_headers_complete(self) -> None:
        self._awaiting_head = False
        size = len(self.url) + sum(len(n) + len(v) + 4 for n, v in self.headers)
        if size > self.limits.max_header_bytes:
            # The whole head came in one read: answer through the app path, which knows the
            # request is complete, with a 431 app.
            app = self.app
            self.app = _head_too_large
            try:
                super().on_headers_complete()
            finally:
                self.app = app
            return
        self._in_body = True
        self._body_seen_at = self._loop.time()
        self._arm(self.limits.body_timeout_seconds)
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._in_body = False
        self._cancel_guard()
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # A pipelined request whose head already came is in flight now: no head to wait for.
        if not self.transport.is_closing() and (self.cycle is None or self.cycle.response_complete):
            self._await_head()

    # --- guards -------------------------------------------------------------------------------

    def _await_head(self) -> None:
        self._awaiting_head = True
        self._head_bytes = 0
        self._waiting_since = self._loop.time()
        # The order connections began waiting in. Not `_waiting_since`: uvloop's clock ticks in
        # milliseconds and is read once per turn of the loop, so a burst of connections all
        # start waiting at the same time, and the "oldest" among them would be any of them.
        self._waiting_turn = next(_WAITING_TURNS)
        self._arm(self.limits.header_timeout_seconds)

    def _arm(self, delay: float) -> None:
        self._cancel_guard()
        self._guard = self._loop.call_later(delay, self._check)

    def _cancel_guard(self) -> None:
        if self._guard is not None:
            self._guard.cancel()
            self._guard = None

    def _check(self) -> None:
        self._guard = None
        if self._closed or self.transport.is_closing():
            return
        now = self._loop.time()
        if self._awaiting_head:
            waited = now - self._waiting_since
            if waited < self.limits.header_timeout_seconds:
                # Timers may fire a hair early: wait for the rest.
                self._arm(self.limits.header_timeout_seconds - waited)
            elif self._head_bytes:
                self._reject(HEAD_TIMEOUT, "head_timeout")
            else:
                CLOSED.labels("idle").inc()
                self._close_quietly()
            return
        if self._in_body:
            silent = now - self._body_seen_at
            if self.flow.read_paused:
                # The app is not reading: the client is not the one being slow.
                self._body_seen_at = now
                self._arm(self.limits.body_timeout_seconds)
            elif silent >= self.limits.body_timeout_seconds:
                CLOSED.labels("body_timeout").inc()
                log.debug("closing a connection whose request body stalled", extra=self._who())
                self.transport.close()
            else:
                self._arm(self.limits.body_timeout_seconds - silent)

    def _make_room(self) -> None:
        """Close the connections waiting longest for a request head, until under the cap."""
        # Connections closed to make room stay in the set until a later turn of the loop: they
        # do not count, or each arrival of a burst would close more than it needs.
        live = [c for c in self.connections if not c.transport.is_closing()]
        excess = len(live) - self.limits.max_connections
        if excess <= 0:
            return
        idle = [
            c
            for c in self.connections
            if isinstance(c, GuardedHttpToolsProtocol)
            and c is not self
            and c._awaiting_head
            and not c.transport.is_closing()
        ]
        oldest = heapq.nsmallest(excess, idle, key=lambda c: c._waiting_turn)
        for connection in oldest:
            connection._close_quietly()
        CLOSED.labels("evicted_over_cap").inc(len(oldest))
        if len(oldest) < excess:
            # Every other connection is busy with a request: this one cannot be served now.
            self._reject(OVER_CAPACITY, "over_cap")

    def _reject(self, response: bytes, reason: str) -> None:
        CLOSED.labels(reason).inc()
        log.debug("closing a connection: %s", reason, extra=self._who())
        self._cancel_guard()
        self.transport.write(response)
        self._close_quietly()

    def _close_quietly(self) -> None:
        self._cancel_guard()
        self._awaiting_head = False
        self.connections.discard(self)
        self.transport.close()

    def _who(self) -> dict[str, str]:
        return {"client": f"{self.client[0]}:{self.client[1]}"} if self.client else {}


async def _head_too_large(scope: Any, receive: Any, send: Any) -> None:
    body = b'{"code":"headers_too_large"}'
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": 431, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def guarded_protocol(limits: HttpLimits) -> type[GuardedHttpToolsProtocol]:
    """The protocol class uvicorn instantiates per connection, bound to `limits`."""
    return type("MediaplaneHttpProtocol", (GuardedHttpToolsProtocol,), {"limits": limits})


def connection_cap(limits: HttpLimits) -> int:
    """`max_connections`, lowered to what the file-descriptor limit can hold (raised first to
    the hard limit: a common soft limit of 1024 is below the default cap)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    room = soft - RESERVED_FDS if soft != resource.RLIM_INFINITY else limits.max_connections
    if room < limits.max_connections:
        log.warning(
            "HTTP_MAX_CONNECTIONS=%d lowered to %d: the file-descriptor limit is %d",
            limits.max_connections,
            max(room, 1),
            soft,
        )
        return max(room, 1)
    return limits.max_connections


def server_config(
    app: ASGIApp, limits: HttpLimits, *, host: str, port: int, **options: Any
) -> uvicorn.Config:
    """The uvicorn config `mediaplane serve` runs (and the tests serve through)."""
    cap = connection_cap(limits)
    bounded = dataclasses.replace(limits, max_connections=cap)
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=guarded_protocol(bounded),
        timeout_keep_alive=limits.keep_alive_seconds,
        **options,
    )


def listening_socket(host: str, port: int) -> socket.socket:
    """A bound, listening TCP socket (port 0: a free one), for servers started in-process."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    return sock

"""A real uvicorn, configured as `mediaplane serve` configures it, on a real socket in a thread.

Hostile clients are raw sockets: httpx would never send a half request head or a lying body.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import pytest
import uvicorn
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mediaplane.http import HttpLimits
from mediaplane.http.server import listening_socket, server_config


class BodyMeter:
    """Wraps an app and counts the request-body bytes it pulls from the server."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.received = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def counted() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                self.received += len(message.get("body", b""))
            return message

        await self.app(scope, counted, send)


@dataclass
class LiveServer:
    host: str
    port: int
    server: uvicorn.Server
    sockets: list[socket.socket] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def connect(self, timeout: float = 10) -> socket.socket:
        sock = socket.create_connection((self.host, self.port), timeout=timeout)
        self.sockets.append(sock)
        return sock

    def open_connections(self) -> int:
        return len(self.server.server_state.connections)


@contextmanager
def live_server(app: ASGIApp, limits: HttpLimits) -> Iterator[LiveServer]:
    sock = listening_socket("127.0.0.1", 0)
    config = server_config(app, limits, host="127.0.0.1", port=0, log_level="info", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail("uvicorn did not start")
        time.sleep(0.01)
    live = LiveServer("127.0.0.1", sock.getsockname()[1], server)
    try:
        yield live
    finally:
        for client in live.sockets:
            client.close()
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()


def limits(**overrides: object) -> HttpLimits:
    values: dict[str, object] = {
        "max_body_bytes": 64 * 1024,
        "max_header_bytes": 16 * 1024,
        "header_timeout_seconds": 10.0,
        "body_timeout_seconds": 30.0,
        "keep_alive_seconds": 5,
        "max_connections": 1000,
    }
    values.update(overrides)
    return HttpLimits(**values)  # type: ignore[arg-type]


def read_response(sock: socket.socket, timeout: float = 10) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of one HTTP/1.1 response (Content-Length bodies), or (0, {}, b"")
    when the server closed the connection without answering."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            return (0, {}, b"") if not data else _parse(data)
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status, headers, _ = _parse(head + b"\r\n\r\n")
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        body += chunk
    return status, headers, body


def _parse(data: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, body


def closed_by_server(sock: socket.socket, timeout: float) -> bool:
    """The server closes `sock` within `timeout` seconds (EOF or reset)."""
    sock.settimeout(timeout)
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False


def request_head(
    method: str, path: str, *, host: str = "127.0.0.1", headers: dict[str, str] | None = None
) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

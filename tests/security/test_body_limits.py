"""Point 1 of issue 9: no route buffers more than its body limit, before or after authentication.

Each case sends to a real uvicorn over a real socket, without credentials, and counts what the
app pulled from the server: a declared 60 MB body is answered 413 before a byte is read, a
chunked body is cut at the limit, and the storage-events route refuses a wrong secret without
reading the body at all.
"""

from __future__ import annotations

import json
import socket

import pytest
from fastapi import FastAPI

from tests.security.conftest import (
    BodyMeter,
    closed_by_server,
    limits,
    live_server,
    read_response,
    request_head,
)

LIMIT = 64 * 1024
SIXTY_MB = 60 * 1024 * 1024

JSON_ROUTES = [
    ("/v1/photos/upload-url", "problem"),
    ("/v1/selfie/upload-url", "problem"),
    ("/v1/me/consents/biometric_processing", "problem"),
    ("/console/dev-token", "problem"),
    ("/api/images/upload", "authgear"),
    ("/_api/admin/images/upload", "authgear"),
]


def assert_body_too_large(status: int, headers: dict[str, str], body: bytes, shape: str) -> None:
    assert status == 413
    data = json.loads(body)
    if shape == "problem":
        assert headers["content-type"] == "application/problem+json"
        assert data["code"] == "body_too_large" and data["status"] == 413
    else:
        error = data["error"]
        assert (error["name"], error["reason"], error["code"]) == (
            "RequestEntityTooLarge",
            "BodyTooLarge",
            413,
        )


def send_body_until_refused(sock: socket.socket, size: int) -> int:
    """Push up to `size` bytes; how many went before the server's close stopped us."""
    chunk = b"x" * (1024 * 1024)
    sent = 0
    try:
        while sent < size:
            sent += sock.send(chunk)
    except (BrokenPipeError, ConnectionResetError):
        pass
    return sent


@pytest.mark.parametrize(("path", "shape"), JSON_ROUTES)
def test_a_declared_60_mb_body_is_refused_before_a_byte_is_read(
    app: FastAPI, path: str, shape: str
) -> None:
    meter = BodyMeter(app)
    with live_server(meter, limits(max_body_bytes=LIMIT)) as server:
        sock = server.connect()
        headers = {"Content-Type": "application/json", "Content-Length": str(SIXTY_MB)}
        sock.sendall(request_head("POST", path, headers=headers))
        assert_body_too_large(*read_response(sock), shape)
        assert send_body_until_refused(sock, SIXTY_MB) < SIXTY_MB
    assert meter.received == 0


@pytest.mark.parametrize(("path", "shape"), JSON_ROUTES[:1] + JSON_ROUTES[-1:])
def test_a_chunked_body_is_cut_at_the_limit(app: FastAPI, path: str, shape: str) -> None:
    meter = BodyMeter(app)
    with live_server(meter, limits(max_body_bytes=LIMIT)) as server:
        sock = server.connect()
        headers = {"Content-Type": "application/json", "Transfer-Encoding": "chunked"}
        sock.sendall(request_head("POST", path, headers=headers))
        piece = b"x" * 8192
        # Just over the limit, and no more: everything sent is read, so the close is clean.
        for _ in range(LIMIT // len(piece) + 1):
            sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
        assert_body_too_large(*read_response(sock), shape)
        assert closed_by_server(sock, timeout=5)
    assert LIMIT < meter.received <= LIMIT + len(piece)


def test_json_bodies_under_the_limit_still_work(app: FastAPI, make_token) -> None:
    meter = BodyMeter(app)
    token = make_token(aud="media", roles=["photographer"])
    payload = json.dumps({"projectId": "8d3f6a58-8d55-4a39-9a25-4b3cb2f5e0f1"}).encode()
    with live_server(meter, limits(max_body_bytes=LIMIT)) as server:
        sock = server.connect()
        headers = {
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
            "Content-Length": str(len(payload)),
        }
        sock.sendall(request_head("POST", "/v1/photos/upload-url", headers=headers) + payload)
        status, _, body = read_response(sock)
    assert status == 201, body
    assert meter.received == len(payload)


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer wrong-secret"],
    ids=["no-secret", "wrong-secret"],
)
def test_storage_events_check_the_secret_before_reading_the_body(
    app: FastAPI, authorization: str | None
) -> None:
    meter = BodyMeter(app)
    # Under the body limit, so only the secret check can refuse it unread.
    size = LIMIT - 1
    with live_server(meter, limits(max_body_bytes=LIMIT)) as server:
        sock = server.connect()
        headers = {"Content-Type": "application/json", "Content-Length": str(size)}
        if authorization:
            headers["Authorization"] = authorization
        sock.sendall(request_head("POST", "/v1/storage/events", headers=headers))
        status, _, body = read_response(sock)
        assert status == 401
        assert json.loads(body)["code"] == "invalid_events_secret"
    assert meter.received == 0


def test_storage_events_with_the_secret_are_still_bounded(app: FastAPI) -> None:
    meter = BodyMeter(app)
    with live_server(meter, limits(max_body_bytes=LIMIT)) as server:
        sock = server.connect()
        headers = {
            "Authorization": "Bearer test-events-secret",
            "Content-Type": "application/json",
            "Content-Length": str(SIXTY_MB),
        }
        sock.sendall(request_head("POST", "/v1/storage/events", headers=headers))
        assert_body_too_large(*read_response(sock), "problem")
        body = b'{"Records": []}'
        sock = server.connect()
        headers["Content-Length"] = str(len(body))
        sock.sendall(request_head("POST", "/v1/storage/events", headers=headers) + body)
        status, _, answer = read_response(sock)
    assert status == 200 and json.loads(answer) == {"records": 0, "settled": 0}
    assert meter.received == len(body)

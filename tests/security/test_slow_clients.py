"""Point 5 of issue 9: slow and idle clients are cut, and cannot lock real clients out.

A real uvicorn configured as `mediaplane serve` runs it, short timeouts set for the test.
"""

from __future__ import annotations

import io
import json
import os
import re
import socket
import time
from urllib.parse import urlsplit

from fastapi import FastAPI
from prometheus_client import REGISTRY

from mediaplane.runtime import Runtime
from tests.security.conftest import (
    closed_by_server,
    limits,
    live_server,
    read_response,
    request_head,
)

HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


def closed(reason: str) -> float:
    value = REGISTRY.get_sample_value(
        "mediaplane_http_connections_closed_total", {"reason": reason}
    )
    return value or 0.0


def test_a_client_dribbling_its_headers_is_cut_after_the_head_timeout(app: FastAPI) -> None:
    before = closed("head_timeout")
    with live_server(app, limits(header_timeout_seconds=1.0)) as server:
        sock = server.connect()
        started = time.monotonic()
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        answer = None
        for n in range(40):
            time.sleep(0.1)
            try:
                sock.sendall(b"X-Slow-%d: 1\r\n" % n)
            except (BrokenPipeError, ConnectionResetError):
                break
            sock.settimeout(0.001)
            try:
                answer = sock.recv(65536)
            except TimeoutError:
                continue
            break
        elapsed = time.monotonic() - started
    assert answer is not None and answer.startswith(b"HTTP/1.1 408"), answer
    assert b"request_head_timeout" in answer
    assert 0.9 < elapsed < 3.0
    assert closed("head_timeout") == before + 1


def test_a_silent_connection_is_closed_after_the_head_timeout(app: FastAPI) -> None:
    with live_server(app, limits(header_timeout_seconds=1.0)) as server:
        sock = server.connect()
        assert closed_by_server(sock, timeout=3)
        assert server.open_connections() == 0


def test_an_idle_keep_alive_connection_is_closed(app: FastAPI) -> None:
    with live_server(app, limits(keep_alive_seconds=1)) as server:
        sock = server.connect()
        sock.sendall(HEALTHZ)
        assert read_response(sock)[0] == 200
        assert closed_by_server(sock, timeout=3)


def test_a_body_that_stalls_is_cut(app: FastAPI) -> None:
    with live_server(app, limits(body_timeout_seconds=1.0)) as server:
        sock = server.connect()
        sock.sendall(
            b"POST /v1/storage/events HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Authorization: Bearer test-events-secret\r\nContent-Type: application/json\r\n"
            b'Content-Length: 100\r\n\r\n{"Records"'
        )
        started = time.monotonic()
        assert closed_by_server(sock, timeout=4)
        assert time.monotonic() - started < 3.0


def test_a_head_over_the_size_limit_is_431(app: FastAPI) -> None:
    with live_server(app, limits(max_header_bytes=8192)) as server:
        # All at once: the parser sees a complete head.
        sock = server.connect()
        sock.sendall(
            b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n"
        )
        status, _, body = read_response(sock)
        assert status == 431 and json.loads(body)["code"] == "headers_too_large"
        # Never ending: judged on what arrived before the head is complete.
        sock = server.connect()
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        for _ in range(20):
            try:
                sock.sendall(b"X-More: " + b"b" * 1000 + b"\r\n")
            except (BrokenPipeError, ConnectionResetError):
                break
        status, _, body = read_response(sock)
        assert status == 431 and json.loads(body)["code"] == "headers_too_large"
        # A normal head on the same server is fine.
        sock = server.connect()
        sock.sendall(HEALTHZ)
        assert read_response(sock)[0] == 200


def test_idle_connections_beyond_the_cap_do_not_lock_out_a_real_client(app: FastAPI) -> None:
    cap = 20
    before = closed("evicted_over_cap")
    with live_server(app, limits(max_connections=cap)) as server:
        idle = [server.connect() for _ in range(cap + 30)]
        # Half of them start a request head and stop: still nothing in flight.
        for sock in idle[::2]:
            sock.sendall(b"GET /healthz HTTP/1.1\r\n")
        client = server.connect()
        client.sendall(HEALTHZ)
        status, _, body = read_response(client)
        assert status == 200, body
        assert server.open_connections() <= cap
        assert closed("evicted_over_cap") - before == 31  # 50 idle + 1 client over 20
        # The oldest were the ones dropped.
        assert closed_by_server(idle[0], timeout=2)
        assert not closed_by_server(idle[-1], timeout=0.2)


def test_a_burst_over_the_cap_closes_only_the_excess(app: FastAPI) -> None:
    # Connections that arrive while the server is busy are accepted together, in one turn of
    # its event loop; those it closes to make room stay in its set until a later turn. Counted
    # as open, they made each later arrival close more: all 30 idle connections of a burst of
    # 30 over a cap of 20 were closed, the newest with them.
    cap = 20
    before = closed("evicted_over_cap")
    with live_server(app, limits(max_connections=cap)) as server:
        loop = server.server.servers[0].get_loop()
        loop.call_soon_threadsafe(time.sleep, 0.5)  # the server is busy for half a second
        time.sleep(0.05)
        burst = [server.connect() for _ in range(cap + 10)]
        deadline = time.monotonic() + 5
        while closed("evicted_over_cap") - before < 10 and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.2)  # room for any further closing

        assert closed("evicted_over_cap") - before == 10
        assert all(closed_by_server(sock, timeout=2) for sock in burst[:10])
        assert not any(closed_by_server(sock, timeout=0.05) for sock in burst[10:])


def test_a_connection_busy_with_a_request_is_not_dropped_for_the_cap(app: FastAPI) -> None:
    cap = 3
    with live_server(app, limits(max_connections=cap, body_timeout_seconds=30)) as server:
        busy = server.connect()
        busy.sendall(
            b"POST /v1/storage/events HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Authorization: Bearer test-events-secret\r\nContent-Type: application/json\r\n"
            b'Content-Length: 15\r\n\r\n{"Records"'
        )
        time.sleep(0.2)
        for _ in range(cap + 2):
            sock = server.connect()
            sock.sendall(HEALTHZ)
            assert read_response(sock)[0] == 200
        busy.sendall(b": []}")
        status, _, body = read_response(busy)
    assert status == 200 and json.loads(body) == {"records": 0, "settled": 0}


def test_a_client_that_stops_reading_its_response_is_cut(app: FastAPI, runtime: Runtime) -> None:
    key = "uploads/test/big.bin"
    runtime.store.put(key, io.BytesIO(os.urandom(16 * 1024 * 1024)), content_type="image/jpeg")
    url = urlsplit(runtime.store.presign_get(key, expires_in=600))
    before = closed("response_stalled")
    with live_server(app, limits(body_timeout_seconds=1.0)) as server:
        sock = socket.socket()
        # A small window: the server's buffers fill after a few hundred KiB.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect((server.host, server.port))
        server.sockets.append(sock)
        sock.sendall(request_head("GET", f"{url.path}?{url.query}"))
        started = time.monotonic()
        while closed("response_stalled") == before and time.monotonic() - started < 5:
            time.sleep(0.05)
        assert closed("response_stalled") == before + 1
        assert 0.9 < time.monotonic() - started < 4
        time.sleep(0.1)
        assert server.open_connections() == 0


def test_pipelined_requests_are_all_answered(app: FastAPI) -> None:
    with live_server(app, limits(header_timeout_seconds=1.0)) as server:
        sock = server.connect()
        sock.sendall(HEALTHZ * 3)
        data = b""
        sock.settimeout(5)
        while data.count(b'{"status":"ok"}') < 3:
            chunk = sock.recv(65536)
            assert chunk, data
            data += chunk
        # Status lines only: a random request id can hold the digits "408".
        assert re.findall(rb"HTTP/1\.1 (\d{3})", data) == [b"200"] * 3

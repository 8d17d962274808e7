"""Hostile HTTP clients against plain uvicorn and against `mediaplane serve`'s guarded uvicorn.

    .venv/bin/python bench/hostile_http.py          # ~1 min

Both servers run the same small FastAPI app in a child process (the shape of the Media API: a
JSON body route behind a bearer-token dependency, and `/healthz`); "plain" is uvicorn 0.54 as
`mediaplane serve` ran it before issue 9, "guarded" is `mediaplane.http.server.server_config`
plus the `BodyLimit` middleware, all limits at their defaults. The child's file-descriptor limit
is set to 1024, a common default. Three attacks, the figures of issue 9:

1. memory: four 60 MB bodies at once, no credentials → peak and retained RSS of the server;
2. slowloris: 300 connections dribbling a header line every 2 s → how many are still open after
   15 s, and whether a real client gets 200 meanwhile;
3. idle flood: 1,100 connections that send nothing → does a new real client get 200 (5 s)?

Also the guards' cost: requests/s of keep-alive GETs from one client. Prints a table; JSON in
bench/results/hostile_http.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import uvicorn
from fastapi import Depends, FastAPI, Header, HTTPException
from pydantic import BaseModel

from mediaplane.http import BodyLimit, HttpLimits
from mediaplane.http.server import server_config
from mediaplane.settings import Settings
from mediaplane.web import problem_response

RESULTS = Path(__file__).parent / "results" / "hostile_http.json"
SIXTY_MB = 60 * 1024 * 1024


# --- the server child ----------------------------------------------------------------------------


class UploadRequest(BaseModel):
    project_id: str


def bearer(authorization: str | None = Header(default=None)) -> str:
    if not authorization:
        raise HTTPException(401, "missing token")
    return authorization


def serve(mode: str, port: int) -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))
    app = FastAPI()

    @app.post("/v1/photos/upload-url")
    def upload_url(body: UploadRequest, token: str = Depends(bearer)) -> dict[str, str]:
        return {"projectId": body.project_id}

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    if mode == "guarded":
        app.add_middleware(
            BodyLimit,
            max_bytes=settings.http_max_body_bytes,
            streamed=(),
            render=lambda scope, exc: problem_response(exc),
        )
        config = server_config(
            app, HttpLimits.from_settings(settings), host="127.0.0.1", port=port, log_level="error"
        )
    else:
        config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="critical")
    uvicorn.Server(config).run()


# --- the attacks -----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def get_healthz(port: int, timeout: float = 5.0) -> tuple[int, float]:
    started = time.perf_counter()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            data = sock.recv(4096)
        status = int(data.split(b" ")[1]) if data else 0
    except OSError:
        status = 0
    return status, (time.perf_counter() - started) * 1000


def big_body(port: int) -> None:
    head = (
        "POST /v1/photos/upload-url HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Type: application/json\r\nContent-Length: {SIXTY_MB}\r\n\r\n"
    ).encode()
    chunk = b'{"projectId": "' + b"x" * (1024 * 1024)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            sock.sendall(head)
            sent = 0
            while sent < SIXTY_MB:
                piece = chunk[: SIXTY_MB - sent]
                sock.sendall(piece)
                sent += len(piece)
            sock.recv(4096)
    except OSError:
        pass


def memory_attack(pid: int, port: int) -> dict[str, float]:
    before = rss_mb(pid)
    peak = before
    threads = [threading.Thread(target=big_body, args=(port,)) for _ in range(4)]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        peak = max(peak, rss_mb(pid))
        time.sleep(0.02)
    time.sleep(1.0)
    return {
        "rss_before_mb": before,
        "rss_peak_delta_mb": peak - before,
        "rss_kept_mb": rss_mb(pid) - before,
    }


def slowloris(port: int, connections: int = 300, watch: float = 15.0) -> dict[str, float]:
    socks = []
    for _ in range(connections):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        s.setblocking(False)
        socks.append(s)
    started = time.monotonic()
    open_ = set(range(connections))
    n = 0
    while time.monotonic() - started < watch:
        time.sleep(2.0)
        n += 1
        for i in list(open_):
            try:
                socks[i].send(b"X-Dribble-%d: 1\r\n" % n)
                if socks[i].recv(1024) == b"":
                    open_.discard(i)
            except BlockingIOError:
                continue
            except OSError:
                open_.discard(i)
    status, ms = get_healthz(port)
    for s in socks:
        s.close()
    return {"still_open_after_15s": len(open_), "real_client_status": status, "real_client_ms": ms}


def idle_flood(port: int, connections: int = 1100) -> dict[str, float]:
    socks = []
    for _ in range(connections):
        try:
            socks.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        except OSError:
            break
    time.sleep(0.5)
    status, ms = get_healthz(port)
    for s in socks:
        s.close()
    return {"idle_opened": len(socks), "real_client_status": status, "real_client_ms": ms}


def throughput(port: int, requests: int = 3000) -> dict[str, float]:
    """Keep-alive GETs on one connection, one at a time: the guards' cost per request."""
    request = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        started = time.perf_counter()
        for _ in range(requests):
            sock.sendall(request)
            data = b""
            while not data.endswith(b'{"status":"ok"}'):
                data += sock.recv(4096)
        elapsed = time.perf_counter() - started
    return {"requests_per_second": requests / elapsed}


def run(mode: str) -> dict[str, dict[str, float]]:
    port = free_port()
    child = subprocess.Popen(
        [sys.executable, __file__, "serve", mode, str(port)],
        env={**os.environ, "NO_PROXY": "*"},
    )
    try:
        deadline = time.monotonic() + 30
        while get_healthz(port, timeout=0.5)[0] != 200:
            if time.monotonic() > deadline:
                raise SystemExit(f"{mode} server did not start")
            time.sleep(0.1)
        results = {"throughput": throughput(port)}
        results["memory"] = memory_attack(child.pid, port)
        results["slowloris"] = slowloris(port)
        results["idle_flood"] = idle_flood(port)
        return results
    finally:
        child.kill()
        child.wait()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("command", nargs="?", default="bench")
    parser.add_argument("mode", nargs="?")
    parser.add_argument("port", nargs="?", type=int)
    args = parser.parse_args()
    if args.command == "serve":
        serve(args.mode, args.port)
        return
    results = {mode: run(mode) for mode in ("plain", "guarded")}
    rows = [
        ("keep-alive GET /healthz, one client: requests/s", "throughput", "requests_per_second"),
        ("4 × 60 MB bodies, no token: peak RSS +MB", "memory", "rss_peak_delta_mb"),
        ("  RSS kept afterwards +MB", "memory", "rss_kept_mb"),
        ("300 slowloris: still open after 15 s", "slowloris", "still_open_after_15s"),
        ("  real client meanwhile: status", "slowloris", "real_client_status"),
        (
            "1,100 idle sockets (fd limit 1024): real client status",
            "idle_flood",
            "real_client_status",
        ),
        ("  real client latency ms", "idle_flood", "real_client_ms"),
    ]
    print(f"{'':58} {'plain uvicorn':>14} {'guarded':>10}")
    for label, group, key in rows:
        plain, guarded = results["plain"][group][key], results["guarded"][group][key]
        cells = [
            "failed" if key == "real_client_status" and v == 0 else f"{v:.0f}"
            for v in (plain, guarded)
        ]
        print(f"{label:58} {cells[0]:>14} {cells[1]:>10}")
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()

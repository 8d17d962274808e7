"""`mediaplane serve` as an operator runs it: a process, an empty database, a port.

It migrates on start; `--no-worker` serves without running jobs; a second `serve --no-worker`
and a separate `mediaplane worker` share the one queue in PostgreSQL.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, text

from mediaplane.auth import mint_dev_token
from mediaplane.db import sqlalchemy_url
from mediaplane.db.migrate import alembic_config
from mediaplane.settings import Settings
from tests.fixtures.s3 import free_ports
from tests.imaging import factories
from tests.jobs.helpers import wait_until, worker_env

pytestmark = pytest.mark.slow

START_TIMEOUT = 60.0


@pytest.fixture
def database_url(empty_database_url: str) -> str:
    """An EMPTY database (not the migrated template): `serve` must build the schema itself."""
    return empty_database_url


class Server:
    """A `mediaplane serve` (or `worker`) process and its address."""

    def __init__(self, settings: Settings, *args: str, port: int | None = None) -> None:
        self.port = port
        self.base_url = f"http://127.0.0.1:{port}"
        extra = {"PUBLIC_URL": self.base_url} if port else {}
        command = [sys.executable, "-m", "mediaplane.cli", *args]
        if port:
            command += ["--host", "127.0.0.1", "--port", str(port)]
        self.process = subprocess.Popen(
            command,
            env=worker_env(settings, **extra),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    def wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(self.stop())
            try:
                if httpx.get(f"{self.base_url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"not ready in {START_TIMEOUT} s: {self.stop()}")

    def stop(self) -> str:
        """SIGTERM, wait; returns the process's stderr (for failure messages)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        assert self.process.stderr is not None
        return self.process.stderr.read().decode(errors="replace")[-3000:]


@pytest.fixture
def processes() -> Iterator[list[Server]]:
    started: list[Server] = []
    yield started
    for server in started:
        server.stop()


def scalar(url: str, sql: str) -> object:
    engine = create_engine(sqlalchemy_url(url))
    try:
        with engine.connect() as conn:
            return conn.execute(text(sql)).scalar()
    finally:
        engine.dispose()


def upload(base_url: str, token: str) -> str:
    """The browser's three calls against a real server; returns the photo id."""
    headers = {"Authorization": f"Bearer {token}"}
    body = httpx.post(
        f"{base_url}/v1/photos/upload-url",
        json={"projectId": str(uuid.uuid4())},
        headers=headers,
    ).json()
    put = httpx.put(
        body["uploadUrl"],
        content=factories.jpeg_bytes(900, 600),
        headers={"Content-Type": "image/jpeg"},
    )
    assert put.status_code == 200, put.text
    done = httpx.post(f"{base_url}/v1/photos/{body['photoId']}/complete", headers=headers)
    assert done.status_code == 200, done.text
    return str(body["photoId"])


def step_statuses(url: str, photo_id: str) -> set[str]:
    engine = create_engine(sqlalchemy_url(url))
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text("SELECT status FROM processing_steps WHERE upload_id = :id"),
                {"id": photo_id},
            )
            return {r[0] for r in rows}
    finally:
        engine.dispose()


def test_serve_migrates_an_empty_database_and_no_worker_leaves_jobs_queued(
    settings: Settings, database_url: str, processes: list[Server]
) -> None:
    assert scalar(database_url, "SELECT to_regclass('alembic_version')::text") is None
    port_a, port_b = free_ports(2)
    first = Server(settings, "serve", "--no-worker", port=port_a)
    processes.append(first)
    first.wait_ready()

    head = ScriptDirectory.from_config(alembic_config(database_url)).get_current_head()
    assert scalar(database_url, "SELECT version_num FROM alembic_version") == head

    token = mint_dev_token(settings, subject="pat", audience="media", roles=["photographer"])
    photo = upload(first.base_url, token)
    assert step_statuses(database_url, photo) == {"queued"}
    # No worker: none registered with the queue, and the jobs stay waiting.
    time.sleep(1.5)
    assert scalar(database_url, "SELECT count(*) FROM procrastinate_workers") == 0
    assert step_statuses(database_url, photo) == {"queued"}
    assert scalar(database_url, "SELECT count(*) FROM procrastinate_jobs WHERE status='todo'") == 2

    # A second API process (no worker) and a worker process on the same database and storage.
    second = Server(settings, "serve", "--no-worker", port=port_b)
    processes.append(second)
    second.wait_ready()
    worker = Server(settings, "worker", "--concurrency", "2")
    processes.append(worker)
    other = upload(second.base_url, token)

    wait_until(
        lambda: all(step_statuses(database_url, p) == {"done"} for p in (photo, other)),
        timeout=90,
        interval=0.3,
    )
    # The one worker is the only one the queue knows; each API process was started once.
    assert scalar(database_url, "SELECT count(*) FROM procrastinate_workers") == 1
    for name in ("thumb-400", "thumb-800", "watermarked"):
        for photo_id in (photo, other):
            assert list(Path(settings.local_storage_root).rglob(f"{photo_id}/{name}.jpg")), name


def test_with_only_the_port_set_upload_urls_and_the_log_point_at_it(
    settings: Settings, database_url: str
) -> None:
    (port,) = free_ports(1)
    env = worker_env(
        settings, MEDIAPLANE_PORT=str(port), MEDIAPLANE_HOST="127.0.0.1", LOG_LEVEL="info"
    )
    env.pop("PUBLIC_URL")
    # The log goes to stdout: gathered into stderr, which `Server.stop` returns.
    process = subprocess.Popen(
        [sys.executable, "-m", "mediaplane.cli", "serve", "--no-worker"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    process.stderr = process.stdout
    server = Server.__new__(Server)
    server.process, server.port, server.base_url = process, port, f"http://localhost:{port}"
    try:
        server.wait_ready()
        token = mint_dev_token(settings, subject="pat", audience="media", roles=["photographer"])
        photo = upload(server.base_url, token)  # PUTs to the issued URL: it must reach us
        assert photo
    finally:
        log = server.stop()
    assert f"serving on http://localhost:{port}" in log

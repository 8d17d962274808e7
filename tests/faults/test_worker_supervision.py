"""The job worker is supervised: it comes back after it dies (database outage) or hangs (its
heartbeat goes silent), with capped exponential backoff, in `mediaplane worker` processes as in
the serving process."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator

import httpx
import psycopg
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from mediaplane.jobs.supervisor import Backoff, WorkerLiveness, WorkerState, WorkerSupervisor
from mediaplane.jobs.worker import build_queue, worker_options
from mediaplane.settings import Settings
from tests.conftest import TokenFactory
from tests.faults.conftest import StoppablePostgres
from tests.faults.test_database_outage import processed, upload_url
from tests.imaging import factories
from tests.jobs.helpers import wait_until, worker_env
from tests.media_api.helpers import put_to_presigned


@pytest.fixture
def database_url(postgres: StoppablePostgres) -> str:
    """The app, its worker and `mediaplane worker` processes use the stoppable server."""
    return postgres.url


def test_restart_backoff_doubles_up_to_its_cap() -> None:
    backoff = Backoff(initial=0.5, maximum=30)
    assert [backoff.delay(n) for n in range(1, 10)] == [0.5, 1, 2, 4, 8, 16, 30, 30, 30]


def test_restart_settings_must_grow() -> None:
    with pytest.raises(ValueError, match="WORKER_RESTART_MAX_SECONDS"):
        Settings(
            _env_file=None,  # type: ignore[call-arg]
            worker_restart_initial_seconds=5,
            worker_restart_max_seconds=1,
        )


# --- a standalone `mediaplane worker` through a database outage ---------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def scrape(port: int) -> dict[str, float]:
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    except httpx.HTTPError:
        return {}
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name.startswith("mediaplane_worker_")
    }


@pytest.fixture
def standalone_worker(settings: Settings) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """A real `mediaplane worker` process with quick heartbeats and restarts, and its metrics
    port."""
    port = free_port()
    env = worker_env(
        settings,
        MEDIAPLANE_HOST="127.0.0.1",
        WORKER_HEARTBEAT_SECONDS="0.5",
        WORKER_STALLED_SECONDS="5",
        WORKER_RESTART_INITIAL_SECONDS="0.2",
        WORKER_RESTART_MAX_SECONDS="1",
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "mediaplane.cli", "worker", "--metrics-port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        yield process, port
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.mark.slow
def test_standalone_worker_outlives_a_database_outage(
    client: TestClient,
    postgres: StoppablePostgres,
    standalone_worker: tuple[subprocess.Popen[bytes], int],
    make_token: TokenFactory,
) -> None:
    process, port = standalone_worker
    token = make_token(aud="media", roles=["photographer"])
    # Generous: a loaded machine takes tens of seconds to start a Python process this size.
    wait_until(lambda: scrape(port).get("mediaplane_worker_up") == 1, timeout=90, interval=0.3)
    before = upload_url(client, token)
    assert put_to_presigned(client, before["uploadUrl"], factories.jpeg_bytes(640, 480)).is_success
    wait_until(lambda: processed(client, token, before["photoId"]), timeout=30)

    postgres.stop()
    try:
        wait_until(lambda: scrape(port).get("mediaplane_worker_up") == 0, timeout=30)
    finally:
        postgres.start()
    assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""

    wait_until(lambda: scrape(port).get("mediaplane_worker_up") == 1, timeout=30)
    after = upload_url(client, token)
    assert put_to_presigned(client, after["uploadUrl"], factories.jpeg_bytes(700, 500)).is_success
    wait_until(lambda: processed(client, token, after["photoId"]), timeout=30)
    assert scrape(port)["mediaplane_worker_restarts_total"] >= 1
    assert process.poll() is None

    process.send_signal(signal.SIGTERM)  # the only way it stops: on request, and cleanly
    assert process.wait(timeout=20) == 0


# --- a worker that hangs instead of dying ------------------------------------------------------


@pytest.mark.slow
def test_worker_whose_heartbeat_hangs_is_halted_and_restarted(
    app: FastAPI, postgres: StoppablePostgres
) -> None:
    """A heartbeat stuck behind a row lock (as behind a dead connection): the supervisor halts
    the silent worker and starts another once the database lets it."""
    env = app.state.jobs
    liveness = WorkerLiveness(stalled_after=1.5)
    supervisor = WorkerSupervisor(
        build_queue(env, liveness=liveness),
        conninfo=env.db.url,
        options={**worker_options(env), "update_heartbeat_interval": 0.2},
        liveness=liveness,
        backoff=Backoff(initial=0.1, maximum=0.5),
        check_every=0.2,
        halt_grace=0.5,
    )

    async def until(predicate, timeout: float) -> None:  # type: ignore[no-untyped-def]
        for _ in range(int(timeout / 0.05)):
            if predicate():
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"condition not met within {timeout} s")

    async def scenario() -> None:
        running = asyncio.create_task(supervisor.run())
        await until(lambda: liveness.healthy, timeout=10)
        async with await psycopg.AsyncConnection.connect(postgres.url) as blocker:
            # Hold the worker's heartbeat row: its next heartbeat waits, silently.
            await blocker.execute("SELECT id FROM procrastinate_workers FOR UPDATE")
            await until(lambda: not liveness.healthy, timeout=5)
            await until(lambda: liveness.restarts >= 1, timeout=10)
            assert liveness.last_error is not None and "no heartbeat" in liveness.last_error
            await blocker.rollback()
        await until(lambda: liveness.healthy, timeout=10)
        supervisor.stop()
        await asyncio.wait_for(running, timeout=15)
        assert liveness.state is WorkerState.STOPPED

    asyncio.run(scenario())

"""Transient failures are retried with exponential backoff, up to JOB_MAX_ATTEMPTS runs.

The storage really goes away: the test's own SeaweedFS is stopped while the steps run, so the
steps fail in boto3 exactly as they would when S3 is down. The database really goes away too:
its connections are cut and refused while a step finishes. Waiting out the backoff is replaced
by moving the retried job's `scheduled_at` to now once it has been checked (the queue's clock,
not the step, is what the test moves).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import pyvips
from fastapi import FastAPI
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from mediaplane.db import sqlalchemy_url
from mediaplane.jobs import steps as job_steps
from mediaplane.jobs.models import StepStatus
from mediaplane.runtime import Runtime
from tests.fixtures.s3 import RunningWeed, S3ServerInfo, weed_mini
from tests.imaging import factories
from tests.jobs.helpers import drain, make_waiting_jobs_due, steps_of, upload_photo, wait_until
from tests.jobs.test_workers import large_jpeg

pytestmark = pytest.mark.slow

MAX_ATTEMPTS = 3
BASE_SECONDS = 2  # retry n (n = 1, 2, ...) waits BASE_SECONDS ** n


class Storage:
    """A SeaweedFS of this test alone, that can be stopped and started at the same address."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.ports: list[int] | None = None
        self._stack: contextlib.ExitStack | None = None
        self.running: RunningWeed | None = None

    def start(self) -> RunningWeed:
        stack = contextlib.ExitStack()
        self.running = stack.enter_context(weed_mini(self.base, ports=self.ports))
        self.ports = self.running.ports
        self._stack = stack
        return self.running

    def stop(self) -> None:
        if self._stack is not None:
            self._stack.close()
            self._stack = None


@pytest.fixture(autouse=True)
def steps_on_their_own_jobs(app: FastAPI, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each step here is retried by its own job, on its own backoff: the photo's first job
    does not carry the other (CARRY_PHOTO_STEPS). A carrier would run the two failing steps
    one after the other, and the first one's retry could come due within the same drain.
    Carriers meeting failures are tests/jobs/test_carry.py's, and the outage test below that
    turns carrying back on."""
    env = app.state.jobs
    monkeypatch.setattr(
        env, "settings", env.settings.model_copy(update={"carry_photo_steps": False})
    )


@pytest.fixture
def storage(tmp_path: Path) -> Iterator[Storage]:
    (tmp_path / "weed").mkdir()
    own = Storage(tmp_path / "weed")
    own.start()
    yield own
    own.stop()


@pytest.fixture
def s3_server(storage: Storage) -> S3ServerInfo:
    # Overrides the session's server for these tests: stopping this one disturbs no one else.
    assert storage.running is not None
    return storage.running.server


@pytest.fixture
def backend() -> str:
    return "s3"


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    return {"job_max_attempts": MAX_ATTEMPTS, "job_retry_base_seconds": BASE_SECONDS}


def jobs_of(app: FastAPI) -> dict[str, dict]:
    """{task name: its procrastinate job row} (one job per step here)."""
    with app.state.db.transaction() as session:
        rows = session.execute(
            text("SELECT task_name, status, attempts, scheduled_at FROM procrastinate_jobs")
        ).mappings()
        return {r["task_name"]: dict(r) for r in rows if r["task_name"].startswith("generate_")}


def run_due_jobs(app: FastAPI) -> tuple[datetime, datetime]:
    """Make the retried jobs due now (the backoff already checked), run them; (start, end)."""
    make_waiting_jobs_due(app)
    start = datetime.now(UTC)
    drain(app)
    return start, datetime.now(UTC)


def readable(runtime: Runtime, key: str) -> bool:
    try:
        runtime.store.read(key)
    except Exception:
        return False
    return True


def assert_backoff(app: FastAPI, *, retry: int, window: tuple[datetime, datetime]) -> None:
    """Every photo step's job waits BASE_SECONDS ** retry after the run that failed."""
    wait = timedelta(seconds=BASE_SECONDS**retry)
    start, end = window
    for task, job in jobs_of(app).items():
        assert job["status"] == "todo", task
        assert job["attempts"] == retry, task
        # The retry is scheduled when the failing run ended: between the run's start and the
        # end of the drain, plus the wait (1 s of slack for clocks read in two processes).
        assert start + wait - timedelta(seconds=1) <= job["scheduled_at"], (task, retry)
        assert job["scheduled_at"] <= end + wait + timedelta(seconds=1), (task, retry)


def test_storage_down_for_a_moment_is_retried_and_the_step_completes(
    client, app: FastAPI, runtime: Runtime, storage: Storage, make_token
) -> None:
    token = make_token(aud="media", roles=["photographer"])
    photo = upload_photo(client, token, factories.jpeg_bytes(1200, 800))
    storage.stop()
    start = datetime.now(UTC)
    drain(app)
    window = (start, datetime.now(UTC))

    rows = steps_of(app)
    assert {s.step for s in rows} == {"thumbnail", "watermark"}
    for step in rows:
        assert step.status == StepStatus.QUEUED
        assert step.attempts == 1
        assert step.reason is not None
        assert step.reason.startswith("retrying: EndpointConnectionError"), step.reason
    assert_backoff(app, retry=1, window=window)

    storage.start()  # same address, same objects
    # SeaweedFS answers S3 before its volume is loaded again (GetObject: InternalError for a
    # moment, seen in CI): "back" means the original reads again, as a retry would find it.
    wait_until(lambda: readable(runtime, photo["key"]), timeout=30, interval=0.2)
    run_due_jobs(app)
    rows = steps_of(app)
    assert {(s.status, s.attempts, s.reason) for s in rows} == {(StepStatus.DONE, 2, None)}
    assert jobs_of(app) == {}  # succeeded jobs are deleted
    thumb = runtime.store.read(photo["key"].replace("original", "thumb-400"))
    assert pyvips.Image.new_from_buffer(thumb, "").width == 400


def test_storage_down_for_good_fails_the_step_with_the_reason_at_the_last_attempt(
    client, app: FastAPI, storage: Storage, make_token
) -> None:
    token = make_token(aud="media", roles=["photographer"])
    upload_photo(client, token, factories.jpeg_bytes(1200, 800))
    storage.stop()
    start = datetime.now(UTC)
    drain(app)
    assert_backoff(app, retry=1, window=(start, datetime.now(UTC)))
    for attempt in range(2, MAX_ATTEMPTS):
        window = run_due_jobs(app)
        assert {(s.status, s.attempts) for s in steps_of(app)} == {(StepStatus.QUEUED, attempt)}
        assert_backoff(app, retry=attempt, window=window)  # 2 s, then 4 s, 8 s...

    run_due_jobs(app)  # the last attempt
    rows = steps_of(app)
    assert {(s.status, s.attempts) for s in rows} == {(StepStatus.FAILED, MAX_ATTEMPTS)}
    for step in rows:
        assert step.reason is not None
        assert step.reason.startswith("EndpointConnectionError: Could not connect"), step.reason
        assert step.finished_at is not None
    jobs = jobs_of(app)
    assert {j["status"] for j in jobs.values()} == {"failed"}
    assert {j["attempts"] for j in jobs.values()} == {MAX_ATTEMPTS}


def test_a_carrier_meeting_a_storage_outage_gives_back_what_it_carried_and_loses_nothing(
    client, app: FastAPI, runtime: Runtime, storage: Storage, make_token, monkeypatch
) -> None:
    # Carrying on (CARRY_PHOTO_STEPS, the default), as this module's other tests do not.
    env = app.state.jobs
    monkeypatch.setattr(
        env, "settings", env.settings.model_copy(update={"carry_photo_steps": True})
    )
    released: list[str] = []
    real_release = job_steps.release

    def release(session, *, upload_id, step):
        released.append(step.value)
        real_release(session, upload_id=upload_id, step=step)

    monkeypatch.setattr(job_steps, "release", release)
    token = make_token(aud="media", roles=["photographer"])
    photo = upload_photo(client, token, factories.jpeg_bytes(1200, 800))
    storage.stop()
    drain(app, concurrency=1)

    # The thumbnail's job carried the watermark, could not read the original, and gave the
    # watermark its job back, uncounted; that job then failed on its own. Each step waits for
    # its own retry.
    assert released == ["watermark"]
    rows = steps_of(app)
    assert {(s.step, s.status, s.attempts) for s in rows} == {
        ("thumbnail", StepStatus.QUEUED, 1),
        ("watermark", StepStatus.QUEUED, 1),
    }
    for step in rows:
        assert step.reason is not None
        assert step.reason.startswith("retrying: EndpointConnectionError"), step.reason
    assert set(jobs_of(app)) == {"generate_thumbnail", "generate_watermark"}

    storage.start()
    wait_until(lambda: readable(runtime, photo["key"]), timeout=30, interval=0.2)
    run_due_jobs(app)  # retries never carry: each step on its own job
    assert {(s.status, s.attempts, s.reason) for s in steps_of(app)} == {(StepStatus.DONE, 2, None)}
    assert jobs_of(app) == {}
    for name in ("thumb-400", "thumb-800", "watermarked"):
        assert runtime.store.read(photo["key"].replace("original", name))


# --- the database goes away while a step runs --------------------------------------------------


@pytest.fixture
def database_name(settings) -> str:
    return make_url(str(settings.database_url)).database or ""


@contextlib.contextmanager
def database_unreachable(pg_server_url: str, name: str) -> Iterator[None]:
    """Every connection to the test's database is cut and new ones are refused until exit: what
    a PostgreSQL restart or a failover looks like from the service."""
    admin = create_engine(sqlalchemy_url(pg_server_url), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false'))
            conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = :name AND pid <> pg_backend_pid()"
                ),
                {"name": name},
            )
        yield
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true'))
        admin.dispose()


@pytest.mark.parametrize("backend", ["local"])
def test_database_down_when_a_step_finishes_is_retried_and_the_step_completes(
    client,
    app: FastAPI,
    runtime: Runtime,
    settings,
    make_token,
    pg_server_url,
    database_name,
) -> None:
    token = make_token(aud="media", roles=["photographer"])
    photo = upload_photo(client, token, large_jpeg(0))
    root = Path(settings.local_storage_root)
    outputs = [root / photo["key"].replace("original", n) for n in ("thumb-800", "watermarked")]
    failures: list[BaseException] = []

    def work() -> None:
        try:
            drain(app)
        except BaseException as exc:  # reported below, not lost in the thread
            failures.append(exc)

    worker = threading.Thread(target=work)
    worker.start()
    wait_until(lambda: any(s.status == StepStatus.RUNNING for s in steps_of(app)), timeout=60)
    with database_unreachable(pg_server_url, database_name):
        # The steps' work ends (their outputs are written) while the database is away: the
        # transaction that settles each step cannot connect.
        wait_until(lambda: all(p.exists() for p in outputs), timeout=120, interval=0.05)
        time.sleep(0.5)
    worker.join(timeout=120)
    assert not worker.is_alive() and failures == []

    jobs = jobs_of(app)
    assert {t: (j["status"], j["attempts"]) for t, j in jobs.items()} == {
        "generate_thumbnail": ("todo", 1),
        "generate_watermark": ("todo", 1),
    }
    assert all(j["scheduled_at"] > datetime.now(UTC) - timedelta(seconds=1) for j in jobs.values())
    assert StepStatus.FAILED not in {s.status for s in steps_of(app)}

    run_due_jobs(app)
    rows = steps_of(app)
    assert {(s.status, s.attempts, s.completions) for s in rows} == {(StepStatus.DONE, 2, 1)}
    assert jobs_of(app) == {}

"""Pipeline test helpers: upload photos through the real API, run workers, read steps."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select, text

from mediaplane.jobs.models import ProcessingStep, StepStatus
from mediaplane.jobs.worker import run_worker
from mediaplane.settings import Settings
from tests.media_api.helpers import bearer, put_to_presigned

SETTLED = {StepStatus.DONE, StepStatus.FAILED}


def upload_photo(
    client: TestClient, token: str, data: bytes, project: uuid.UUID | None = None
) -> dict:
    """Ask for an upload URL, PUT the bytes as a browser would, tell the API it is done."""
    headers = bearer(token)
    body = client.post(
        "/v1/photos/upload-url", json={"projectId": str(project or uuid.uuid4())}, headers=headers
    ).json()
    # 415: local disk refuses a non-image at once (and settles the upload rejected).
    assert put_to_presigned(client, body["uploadUrl"], data).status_code in (200, 415)
    client.post(f"/v1/photos/{body['photoId']}/complete", headers=headers)
    return body


def drain(app: FastAPI, *, concurrency: int = 2) -> None:
    """Run an in-process worker until no new job is waiting. Again while one is: a job may
    queue another as it ends (a carried step given back to a job of its own) after the
    worker's last fetch found the queue empty. Retries (a job tried before) are left to
    their backoff, whatever time the drain took."""
    for _ in range(20):
        run_worker(app.state.jobs, concurrency=concurrency, wait=False)
        if not new_jobs(app):
            return
    raise AssertionError("new jobs kept coming: a job re-queuing itself?")


def make_waiting_jobs_due(app: FastAPI) -> int:
    """Move every waiting job's `scheduled_at` to now (a retry's backoff, once checked, is not
    what a test waits for); returns how many jobs wait."""
    with app.state.db.transaction() as session:
        return len(
            session.execute(
                text(
                    "UPDATE procrastinate_jobs SET scheduled_at = now()"
                    " WHERE status = 'todo' RETURNING id"
                )
            ).all()
        )


def new_jobs(app: FastAPI) -> int:
    """Jobs waiting to run for the first time."""
    with app.state.db.transaction() as session:
        return int(
            session.execute(
                text(
                    "SELECT count(*) FROM procrastinate_jobs WHERE status = 'todo'"
                    " AND attempts = 0 AND (scheduled_at IS NULL OR scheduled_at <= now())"
                )
            ).scalar_one()
        )


def steps_of(app: FastAPI) -> list[ProcessingStep]:
    with app.state.db.transaction() as session:
        return list(session.scalars(select(ProcessingStep)))


def wait_until(predicate: Callable[[], bool], *, timeout: float, interval: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s")


def worker_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment of a `mediaplane worker` process sharing the test's database and store."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("S3_", "STORAGE_"))}
    env.update(
        DATABASE_URL=str(settings.database_url),
        MEDIAPLANE_DATA_DIR=str(settings.data_dir),
        PUBLIC_URL=settings.public_url,
        IMAGES_SIGNING_KEY=str(settings.images_signing_key),
        STORAGE_SIGNING_SECRET=str(settings.storage_signing_secret),
        UPLOAD_SWEEP_INTERVAL_SECONDS="0",
        FACE_ENGINE=settings.face_engine,
        WORKER_HEARTBEAT_SECONDS="1",
        WORKER_STALLED_SECONDS="3",
        LOG_LEVEL="warning",
    )
    if settings.storage_backend == "s3":
        env.update(
            STORAGE_URL=str(settings.storage_url),
            S3_ENDPOINT_URL=str(settings.s3_endpoint_url),
            S3_REGION=settings.s3_region,
            S3_ACCESS_KEY_ID=str(settings.s3_access_key_id),
            S3_SECRET_ACCESS_KEY=str(settings.s3_secret_access_key),
            S3_PATH_STYLE="true",
        )
    else:
        env["STORAGE_URL"] = Path(settings.local_storage_root).absolute().as_uri()
    env.update(extra)
    return env


def start_worker(settings: Settings, *, concurrency: int = 2) -> subprocess.Popen[bytes]:
    """A real `mediaplane worker` process."""
    return subprocess.Popen(
        [sys.executable, "-m", "mediaplane.cli", "worker", "--concurrency", str(concurrency)],
        env=worker_env(settings),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )

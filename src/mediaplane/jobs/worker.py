"""Running workers: in the serving process (embedded default) or alone (`mediaplane worker`),
supervised either way (`supervisor.py`): a worker that dies is restarted, with backoff."""

from __future__ import annotations

import asyncio
import signal

import procrastinate

from mediaplane.db import Database
from mediaplane.jobs.queue import build_app
from mediaplane.jobs.steps import hand_off_for
from mediaplane.jobs.supervisor import (
    Backoff,
    HeartbeatJobManager,
    WorkerLiveness,
    WorkerSupervisor,
)
from mediaplane.jobs.tasks import JobEnv, register
from mediaplane.settings import Settings
from mediaplane.storage import ObjectStore
from mediaplane.uploads import UploadTracker


def job_env(settings: Settings, *, database: Database, store: ObjectStore) -> JobEnv:
    """What API and workers share: every upload that arrives is handed to the pipeline in the
    transaction that marks it."""
    hand_off = hand_off_for(faces=settings.face_engine != "off")
    tracker = UploadTracker(db=database, store=store, settings=settings, hand_off=[hand_off])
    return JobEnv(settings=settings, db=database, store=store, tracker=tracker)


def build_queue(env: JobEnv, *, liveness: WorkerLiveness | None = None) -> procrastinate.App:
    """The queue with every task; with `liveness`, each heartbeat of its worker is reported."""
    app = build_app(env.db.url)
    if liveness is not None:
        # Before `register`: tasks keep the job manager they were registered with.
        app.job_manager = HeartbeatJobManager(app.connector, liveness)
    register(app, env)
    return app


def worker_options(env: JobEnv, *, concurrency: int | None = None) -> dict[str, object]:
    settings = env.settings
    return {
        "concurrency": concurrency or settings.worker_concurrency,
        "update_heartbeat_interval": settings.worker_heartbeat_seconds,
        "stalled_worker_timeout": settings.worker_stalled_seconds,
        "delete_jobs": "successful",
    }


def supervised_worker(env: JobEnv, *, concurrency: int | None = None) -> WorkerSupervisor:
    """A worker that comes back by itself after a database outage (see `supervisor`)."""
    settings = env.settings
    liveness = WorkerLiveness(stalled_after=settings.worker_stalled_seconds)
    return WorkerSupervisor(
        build_queue(env, liveness=liveness),
        conninfo=env.db.url,
        options=worker_options(env, concurrency=concurrency),
        liveness=liveness,
        backoff=Backoff(
            initial=settings.worker_restart_initial_seconds,
            maximum=settings.worker_restart_max_seconds,
        ),
        check_every=min(1.0, settings.worker_heartbeat_seconds),
    )


class InProcessWorker:
    """A supervised procrastinate worker on the serving process's event loop.

    Its own loop work is async I/O; sync tasks (all image work) run in threads, never on the
    event loop that answers HTTP requests. Starting does not wait for the database: the
    supervisor starts the worker when the database answers, and again after every outage.
    """

    def __init__(self, env: JobEnv) -> None:
        self.supervisor = supervised_worker(env)
        self._task: asyncio.Task[None] | None = None

    @property
    def liveness(self) -> WorkerLiveness:
        return self.supervisor.liveness

    async def start(self) -> None:
        self._task = asyncio.create_task(self.supervisor.run(), name="job worker supervisor")

    async def stop(self) -> None:
        self.supervisor.stop()
        if self._task is not None:
            await self._task


def run_worker(
    env: JobEnv,
    *,
    concurrency: int | None = None,
    wait: bool = True,
    supervisor: WorkerSupervisor | None = None,
) -> None:
    """Run a worker until stopped (SIGTERM/SIGINT), supervised: it outlives database outages.

    `wait=False` runs one unsupervised worker until the queue is empty (tests, scripts).
    """
    if not wait:
        app = build_queue(env)

        async def drain() -> None:
            async with app.open_async():
                await app.run_worker_async(
                    wait=False,
                    **worker_options(env, concurrency=concurrency),  # type: ignore[arg-type]
                )

        asyncio.run(drain())
        return

    async def main() -> None:
        running = supervisor or supervised_worker(env, concurrency=concurrency)
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, running.stop)
        await running.run()

    asyncio.run(main())

"""Running workers: in the serving process (embedded default) or alone (`mediaplane worker`)."""

from __future__ import annotations

import asyncio
import contextlib

import procrastinate

from mediaplane.db import Database
from mediaplane.jobs.queue import build_app
from mediaplane.jobs.steps import hand_off_for
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


def build_queue(env: JobEnv) -> procrastinate.App:
    app = build_app(env.db.url)
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


class InProcessWorker:
    """A procrastinate worker on the serving process's event loop.

    Its own loop work is async I/O; sync tasks (all image work) run in threads, never on the
    event loop that answers HTTP requests.
    """

    def __init__(self, env: JobEnv) -> None:
        self._env = env
        self._app = build_queue(env)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._app.open_async()
        self._task = asyncio.create_task(
            self._app.run_worker_async(
                install_signal_handlers=False,
                **worker_options(self._env),  # type: ignore[arg-type]
            )
        )

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._app.close_async()


def run_worker(env: JobEnv, *, concurrency: int | None = None, wait: bool = True) -> None:
    """Run a worker until stopped (SIGTERM/SIGINT), or until the queue is empty (`wait=False`)."""
    app = build_queue(env)

    async def main() -> None:
        async with app.open_async():
            await app.run_worker_async(
                wait=wait,
                **worker_options(env, concurrency=concurrency),  # type: ignore[arg-type]
            )

    asyncio.run(main())

"""Keeps a job worker running: restarted with capped exponential backoff whenever it dies or
stalls, with its liveness (state, last heartbeat, restarts) kept for /readyz and /metrics.

Why a supervisor: procrastinate's worker stops for good when one of its side tasks fails (the
LISTEN connection, the heartbeat, the periodic deferrer), which is what a database restart
does to them; its shutdown then waits for a pooled connection (up to 30 s) and raises. Left
alone, the worker — and the periodic upkeep it runs: sweeper, reconciler, stalled-job retry —
would never come back. The supervisor also restarts a worker whose heartbeat went silent
(stuck on a dead connection), so a hang is handled like an exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import procrastinate
import psycopg
import structlog
from procrastinate.manager import JobManager
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

log = structlog.get_logger(__name__)

# How long a halted worker may take to let go (jobs running in threads finish on their own)
# before it is cancelled harder; a service shutdown waits longer for running jobs to end.
HALT_GRACE_SECONDS = 5.0
SHUTDOWN_GRACE_SECONDS = 30.0
# libpq's smallest useful connect timeout: the database check before each start.
CONNECT_TIMEOUT_SECONDS = 5


class WorkerState(StrEnum):
    STARTING = "starting"
    RUNNING = "running"
    RESTARTING = "restarting"
    STOPPED = "stopped"


@dataclass(frozen=True)
class Backoff:
    """Wait `initial` seconds before the first restart, doubling each time, at most `maximum`."""

    initial: float
    maximum: float

    def delay(self, failures: int) -> float:
        """The wait before restart number `failures` (1-based) of a row of failures."""
        return min(self.maximum, self.initial * 2 ** max(0, failures - 1))


class WorkerLiveness:
    """What probes read: written on the worker's event loop, read from request threads (plain
    attribute reads: no lock needed)."""

    def __init__(self, *, stalled_after: float) -> None:
        self.stalled_after = stalled_after
        self.state = WorkerState.STARTING
        self.restarts = 0
        self.last_error: str | None = None
        self.last_heartbeat: float | None = None  # wall clock, for people and dashboards
        self._last_sign = time.monotonic()  # start or heartbeat, for staleness
        self.beat_since_start = False

    def starting(self) -> None:
        self.state = WorkerState.STARTING
        self.beat_since_start = False
        self._last_sign = time.monotonic()

    def registered(self) -> None:
        """The worker wrote its first heartbeat (its registration): it is running."""
        self.state = WorkerState.RUNNING
        self._mark()

    def beat(self) -> None:
        self.beat_since_start = True
        self._mark()

    def restarting(self, error: str) -> None:
        self.state = WorkerState.RESTARTING
        self.restarts += 1
        self.last_error = error

    def stopped(self) -> None:
        self.state = WorkerState.STOPPED

    def _mark(self) -> None:
        self.last_heartbeat = time.time()
        self._last_sign = time.monotonic()

    @property
    def silent_for(self) -> float:
        """Seconds since the last heartbeat (or since the start, before the first one)."""
        return time.monotonic() - self._last_sign

    @property
    def stale(self) -> bool:
        return self.silent_for > self.stalled_after

    @property
    def healthy(self) -> bool:
        return self.state is WorkerState.RUNNING and not self.stale

    def check(self) -> str:
        """The /readyz check: "ok", or what is wrong."""
        if self.healthy:
            return "ok"
        if self.state is WorkerState.RUNNING:
            return "stalled"
        return str(self.state)

    def report(self) -> dict[str, Any]:
        heartbeat = (
            datetime.fromtimestamp(self.last_heartbeat, UTC).isoformat().replace("+00:00", "Z")
            if self.last_heartbeat is not None
            else None
        )
        return {
            "state": str(self.state),
            "restarts": self.restarts,
            "lastHeartbeat": heartbeat,
            "secondsSinceHeartbeat": round(self.silent_for, 1) if heartbeat else None,
            "lastError": self.last_error,
        }


class HeartbeatJobManager(JobManager):
    """procrastinate's job manager, telling `liveness` each time the worker's heartbeat is
    written: the heartbeat the other workers trust is the one probes report."""

    def __init__(self, connector: procrastinate.BaseConnector, liveness: WorkerLiveness) -> None:
        super().__init__(connector)
        self._liveness = liveness

    async def register_worker(self) -> int:
        worker_id = await super().register_worker()
        self._liveness.registered()
        return worker_id

    async def update_heartbeat(self, worker_id: int) -> None:
        await super().update_heartbeat(worker_id)
        self._liveness.beat()


class WorkerCollector(Collector):
    """`mediaplane_worker_up`, `mediaplane_worker_restarts_total` and the last heartbeat of
    the worker of this process."""

    def __init__(self, liveness: WorkerLiveness) -> None:
        self._liveness = liveness

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        liveness = self._liveness
        yield GaugeMetricFamily(
            "mediaplane_worker_up",
            "1 while this process's job worker runs and its heartbeat is fresh, else 0.",
            value=1 if liveness.healthy else 0,
        )
        yield CounterMetricFamily(
            "mediaplane_worker_restarts",
            "Restarts of this process's job worker after it died or stalled.",
            value=liveness.restarts,
        )
        if liveness.last_heartbeat is not None:
            yield GaugeMetricFamily(
                "mediaplane_worker_last_heartbeat_timestamp_seconds",
                "When this process's job worker last wrote its heartbeat (Unix time).",
                value=liveness.last_heartbeat,
            )


class WorkerSupervisor:
    """Run a procrastinate worker until `stop()`, restarting it whenever it ends by itself.

    `app` must have been built with a `HeartbeatJobManager` on `liveness`. Each start first
    checks that the database answers (a cheap connect), so an outage costs one failed connect
    per backoff step, not a 30 s pool timeout, and the worker is back within one step of the
    database.
    """

    def __init__(
        self,
        app: procrastinate.App,
        *,
        conninfo: str,
        options: Mapping[str, Any],
        liveness: WorkerLiveness,
        backoff: Backoff,
        check_every: float,
        halt_grace: float = HALT_GRACE_SECONDS,
    ) -> None:
        self.liveness = liveness
        self._app = app
        self._conninfo = conninfo
        self._options = dict(options)
        self._backoff = backoff
        self._check_every = check_every
        self._halt_grace = halt_grace
        # Made by `run()`: an event belongs to the loop that first waits on it.
        self._stopping: asyncio.Event | None = None

    def stop(self) -> None:
        """Ask the worker to finish its running jobs and stop; `run()` then returns."""
        if self._stopping is not None:
            self._stopping.set()

    async def run(self) -> None:
        self._stopping = stopping_event = asyncio.Event()
        failures = 0
        try:
            while not stopping_event.is_set():
                self.liveness.starting()
                try:
                    await self._run_once(stopping_event)
                except Exception as exc:
                    error = describe(exc)
                else:
                    if stopping_event.is_set():
                        break
                    error = "the worker stopped by itself"
                # A worker that beat since it started was healthy: its death starts a new row.
                failures = 1 if self.liveness.beat_since_start else failures + 1
                delay = self._backoff.delay(failures)
                self.liveness.restarting(error)
                log.warning(
                    "job worker down, restarting it",
                    error=error,
                    restart_in_seconds=delay,
                    restarts=self.liveness.restarts,
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopping_event.wait(), timeout=delay)
        finally:
            self.liveness.stopped()

    async def _run_once(self, stopping_event: asyncio.Event) -> None:
        await self._database_answers()
        await self._app.open_async()
        try:
            worker = asyncio.create_task(
                self._app.run_worker_async(install_signal_handlers=False, **self._options),
                name="job worker",
            )
            await self._watch(worker, stopping_event)
        finally:
            with contextlib.suppress(Exception):
                await self._app.close_async()

    async def _database_answers(self) -> None:
        connection = await psycopg.AsyncConnection.connect(
            self._conninfo, connect_timeout=CONNECT_TIMEOUT_SECONDS, autocommit=True
        )
        async with connection:
            await connection.execute("SELECT 1")

    async def _watch(self, worker: asyncio.Task[None], stopping_event: asyncio.Event) -> None:
        """Until the worker ends (its error is raised), stalls (halted, raised) or `stop()`."""
        stopping = asyncio.create_task(stopping_event.wait())
        try:
            while True:
                await asyncio.wait(
                    {worker, stopping},
                    timeout=self._check_every,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                if stopping_event.is_set():
                    await _halt(worker, grace=SHUTDOWN_GRACE_SECONDS)
                    return
                if worker.done():
                    if worker.cancelled():
                        raise WorkerStopped("the worker was cancelled")
                    worker.result()  # its error, if it died of one
                    raise WorkerStopped("the worker stopped by itself")
                if self.liveness.stale:
                    await _halt(worker, grace=self._halt_grace)
                    raise WorkerStopped(
                        f"no heartbeat for {self.liveness.silent_for:.0f} s: halted"
                    )
        finally:
            stopping.cancel()


class WorkerStopped(Exception):
    """The worker ended without being asked to."""


async def _halt(worker: asyncio.Task[None], *, grace: float) -> None:
    """Stop the worker: a first cancel lets it finish its running jobs; a second one, after
    `grace`, interrupts its shutdown (which waits on the database when the database is gone)."""
    for _ in range(2):
        if worker.done():
            break
        worker.cancel()
        await asyncio.wait({worker}, timeout=grace)
    if not worker.done():
        log.error("job worker did not stop; abandoning it")
    elif not worker.cancelled() and worker.exception() is not None:
        log.info("job worker stopped with an error", error=repr(worker.exception()))


def describe(exc: BaseException) -> str:
    """`Name: first line`, and its cause: procrastinate wraps every database error in a
    `ConnectorException` whose own message says only "Database error"."""
    lines = (line.strip() for line in str(exc).splitlines())
    first = next((line for line in lines if line), "")
    text = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
    if exc.__cause__ is not None:
        text += f" (caused by {describe(exc.__cause__)})"
    return text

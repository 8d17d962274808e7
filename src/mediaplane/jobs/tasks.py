"""The procrastinate tasks: the spec's job names, and the periodic upkeep.

Every step task follows one pattern (`run_step`): begin (skip if done) → work → finish; a
refused input (`MediaplaneError`: corrupt, bomb, not an image) fails the step at once with its
reason; any other error is retried with exponential backoff and fails the step on the last
attempt. A failed step never blocks the other steps of the upload.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import procrastinate
import structlog
from sqlalchemy.orm import Session

from mediaplane.consent.retention import RetentionReport, expire_selfies
from mediaplane.db import Database
from mediaplane.errors import MediaplaneError, Unavailable
from mediaplane.faces.index import FaceIndex, build_index
from mediaplane.faces.retention import expire_photo_faces
from mediaplane.faces.service import FaceMatcher, lock_matching
from mediaplane.imaging import Fit, Original, preview_fit, thumbnail_fit
from mediaplane.imaging.budget import release_freed_memory
from mediaplane.jobs import derivatives, metrics, steps
from mediaplane.jobs.models import StepName
from mediaplane.projects.erasure import ProjectEraser, photo_objects
from mediaplane.settings import Settings
from mediaplane.storage import ObjectStore
from mediaplane.uploads import PendingUpload, UploadKind, UploadStatus, UploadTracker
from mediaplane.uploads import service as uploads

log = structlog.get_logger(__name__)


@dataclass
class JobEnv:
    """What tasks need, built once per worker process."""

    settings: Settings
    db: Database
    store: ObjectStore
    tracker: UploadTracker
    _matcher: FaceMatcher | None = field(default=None, repr=False)
    _index: FaceIndex | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def matcher(self) -> FaceMatcher:
        """The face engine and index, loaded on first use (dlib models: ~0.3 s)."""
        if self.settings.face_engine == "off":
            # A face job reached a worker without an engine (queued elsewhere, or before a
            # config change): fail the step with the reason now, do not retry for nothing.
            raise Unavailable("face_engine_off", "FACE_ENGINE is off on this worker")
        with self._lock:
            if self._matcher is None:
                from mediaplane.faces import build_engine
                from mediaplane.faces.index import build_index

                self._matcher = FaceMatcher(
                    engine=build_engine(self.settings),
                    index=build_index(self.settings),
                    threshold=self.settings.match_threshold,
                    photo_face_retention_days=self.settings.photo_face_retention_days,
                )
            return self._matcher

    @property
    def face_index(self) -> FaceIndex:
        """Where faces are kept, to erase them: needed even with FACE_ENGINE=off."""
        with self._lock:
            if self._index is None:
                self._index = build_index(self.settings)
            return self._index


# The work returns facts to record on the upload (width, height, derivatives...). It reads the
# upload's bytes, and its pixels, through `Original`, which decodes them once for every step
# the job carries (see `run_step`).
StepWork = Callable[[JobEnv, PendingUpload, Original], dict[str, object]]


def _record(session: Session, upload: PendingUpload, facts: dict[str, object]) -> None:
    for name in ("width", "height"):
        if name in facts:
            setattr(upload, name, facts[name])
    produced = facts.get("derivatives")
    if isinstance(produced, list):
        upload.derivatives = sorted({*upload.derivatives, *produced})


def run_step(
    env: JobEnv,
    *,
    upload_id: uuid.UUID,
    step: StepName,
    work: StepWork,
    attempt: int,
    max_attempts: int,
    job_id: int | None,
) -> str:
    """Run one step of one upload; returns the outcome: done, failed, skipped (or raises).

    A photo's first job also carries the photo's other steps whose jobs are still waiting
    (`steps.carry`: each such job is withdrawn from the queue), so that all of them share one
    decode of the original (`Original`). They run in `CARRY_ORDER`, each settled as soon as it
    is done; one that fails for a passing reason goes back to a job of its own.
    """
    # Bound to the context, every line logged during the step carries the ids, pyvips' and
    # boto3's included.
    with structlog.contextvars.bound_contextvars(
        job_id=job_id, photo_id=str(upload_id), step=step.value
    ):
        return _run_steps(env, upload_id, step, work, attempt, max_attempts)


# The steps that share a decode, in the order a job carrying several runs them: what people
# look at first, first.
CARRY_ORDER = (StepName.THUMBNAIL, StepName.WATERMARK, StepName.FACES)


def _run_steps(
    env: JobEnv,
    upload_id: uuid.UUID,
    step: StepName,
    work: StepWork,
    attempt: int,
    max_attempts: int,
) -> str:
    with env.db.transaction() as session:
        run = steps.begin(session, upload_id=upload_id, step=step)
        upload = uploads.get(session, upload_id=upload_id)
        carried: list[StepName] = []
        if upload is not None and _carries(env.settings, upload, step):
            others = [s for s in CARRY_ORDER if s != step]
            if attempt > 1:
                # A retry runs alone, so a failing step is not repeated on the back of its
                # siblings; what an earlier run of it carried and left unsettled (its worker
                # died, the database went away) gets its jobs back, even if its own step is
                # done.
                steps.requeue_uncarried(session, upload_id=upload_id, among=others)
            elif run is not None:
                carried = steps.carry(session, upload_id=upload_id, wanted=others)
    if run is None or upload is None:
        log.info("step skipped: already done or unknown")
        return "skipped"
    plan = sorted([step, *carried], key=CARRY_ORDER.index) if carried else [step]
    fits = [fit for s in plan for fit in _fits(env, s)]
    original = derivatives.original_of(env.store, env.settings, upload, fits)
    if carried:
        log.info("steps carried", steps=[s.value for s in carried])
    outcome = "skipped"
    for index, current in enumerate(plan):
        try:
            if current == step:
                outcome = _run_one(
                    env,
                    upload,
                    step,
                    run,
                    work,
                    original,
                    max_attempts=max_attempts,
                    job_last_attempt=attempt >= max_attempts,
                )
            else:
                _run_carried(env, upload, current, original, max_attempts)
        except Exception:  # the job is retried; the carried steps it did not begin go back
            with env.db.transaction() as session:
                for left in plan[index + 1 :]:
                    if left != step:
                        steps.release(session, upload_id=upload_id, step=left)
            raise
        finally:
            # What the step freed goes back to the system before the next one starts, so a
            # worker's peak is one step's memory over its idle size, not the leftovers of the
            # steps before plus that (see `release_freed_memory`).
            release_freed_memory()
    return outcome


def _run_carried(
    env: JobEnv, upload: PendingUpload, step: StepName, original: Original, max_attempts: int
) -> None:
    # Its lines name the step they are about, and the job that carries it.
    with structlog.contextvars.bound_contextvars(step=step.value, carried=True):
        with env.db.transaction() as session:
            run = steps.begin(session, upload_id=upload.id, step=step)
        if run is not None:
            _run_one(
                env,
                upload,
                step,
                run,
                WORK[step],
                original,
                max_attempts=max_attempts,
                job_last_attempt=None,
            )


def _carries(settings: Settings, upload: PendingUpload, step: StepName) -> bool:
    """Whether the job of `step` may carry the upload's other steps (photos only,
    `CARRY_PHOTO_STEPS`). Only a first try carries (see `_run_steps`)."""
    return settings.carry_photo_steps and upload.kind == UploadKind.PHOTO and step in CARRY_ORDER


def _fits(env: JobEnv, step: StepName) -> list[Fit]:
    """The boxes `step` will ask the original for (none for engines that send the bytes)."""
    if step == StepName.THUMBNAIL:
        return [thumbnail_fit(derivatives.THUMBNAIL_WIDTHS)]
    if step == StepName.WATERMARK:
        return [preview_fit(env.settings.watermark_max_edge)]
    if step == StepName.FACES and env.settings.face_engine != "off":
        fit = getattr(env.matcher.engine, "fit", None)
        return [fit] if isinstance(fit, Fit) else []
    return []


def _run_one(
    env: JobEnv,
    upload: PendingUpload,
    step: StepName,
    run: steps.Run,
    work: StepWork,
    original: Original,
    *,
    max_attempts: int,
    job_last_attempt: bool | None,
) -> str:
    """Work one step and settle it. `job_last_attempt` is whether the job running it will not
    be retried, None for a carried step: a passing error hands that one back to a job of its
    own instead of raising.

    `max_attempts` bounds the step's runs, counted on the step (`steps.Run.attempt`), not on
    the job: a step handed back by its carrier, or re-queued by the reconciler, starts a job
    whose own count starts again at 1."""
    upload_id = upload.id
    started = time.perf_counter()
    # Process CPU, not the thread's: libvips and dlib work in threads of their own.
    cpu_started = time.process_time()
    try:
        facts = work(env, upload, original)
    except MediaplaneError as exc:
        with env.db.transaction() as session:
            steps.fail(
                session, upload_id=upload_id, step=step, run=run, reason=f"{exc.reason}: {exc}"
            )
        log.warning("step failed: input refused", reason=exc.reason)
        return "failed"
    except Exception as exc:
        reason = f"{type(exc).__name__}: {exc}"
        last_attempt = run.attempt >= max_attempts or bool(job_last_attempt)
        carried = job_last_attempt is None
        with env.db.transaction() as session:
            if last_attempt:
                steps.fail(session, upload_id=upload_id, step=step, run=run, reason=reason)
            elif carried:
                steps.hand_back(session, upload_id=upload_id, step=step, run=run, reason=reason)
            else:
                steps.retry_later(session, upload_id=upload_id, step=step, run=run, reason=reason)
        if carried and not last_attempt:
            log.warning("carried step handed back", error=reason)
            return "handed back"
        if last_attempt and not job_last_attempt:
            # The step has used up its runs before this job did (or its carrier's job goes
            # on): it failed for good, and the job must not be retried for it (a retry would
            # run the failed step again).
            log.error("step failed: attempts used up", error=reason, attempts=run.attempt)
            return "failed"
        log.exception("step error", last_attempt=last_attempt)
        raise
    with env.db.transaction() as session:
        fresh = uploads.get(session, upload_id=upload_id, lock=True)
        if fresh is None or fresh.status == UploadStatus.DELETED:
            # Deleted while the step ran: what the step wrote goes too.
            if upload.kind == UploadKind.PHOTO:
                for key in photo_objects(env.store, upload):
                    env.store.delete(key)
            log.info("step outcome dropped: the photo was deleted")
            return "skipped"
        _record(session, fresh, facts)
        steps.finish(session, upload_id=upload_id, step=step, run=run)
    seconds = time.perf_counter() - started
    metrics.STEP_DURATION.labels(step=step.value).observe(seconds)
    metrics.STEP_CPU.labels(step=step.value).inc(time.process_time() - cpu_started)
    log.info("step done", seconds=round(seconds, 3))
    return "done"


WORK: dict[StepName, StepWork] = {
    StepName.THUMBNAIL: lambda env, photo, original: derivatives.thumbnails(
        env.store, env.settings, photo, original
    ),
    StepName.WATERMARK: lambda env, photo, original: derivatives.watermark(
        env.store, env.settings, photo, original
    ),
    StepName.FACES: lambda env, photo, original: env.matcher.recognize_faces(
        env.db.transaction, original, photo
    ),
    StepName.SELFIE: lambda env, selfie, original: env.matcher.process_selfie(
        env.db.transaction, env.store, selfie
    ),
}


# The periodic upkeep: procrastinate's lines about their jobs are debug (see mediaplane.logs);
# they log themselves only when they did something.
PERIODIC_TASKS = frozenset(
    {"sweep_uploads", "reconcile_steps", "retry_stalled_jobs", "expire_selfies"}
)
ERASE_PROJECT = "erase_project"
# Upkeep runs before any step: workers take the highest priority first, so a backlog of
# photos cannot delay the retry of a dead worker's jobs (seen: 5 minutes behind 300 photos).
UPKEEP_PRIORITY = 100


def register(app: procrastinate.App, env: JobEnv) -> None:
    """Add every task to `app`, bound to `env`."""
    max_attempts = env.settings.job_max_attempts
    retry = procrastinate.RetryStrategy(
        max_attempts=max_attempts - 1, exponential_wait=env.settings.job_retry_base_seconds
    )

    def step_task(step: StepName, work: StepWork) -> None:
        task_name = steps.TASK_FOR_STEP[step]

        def task(context: procrastinate.JobContext, upload_id: str) -> None:
            attempt = context.job.attempts + 1
            outcome = "error"
            try:
                outcome = run_step(
                    env,
                    upload_id=uuid.UUID(upload_id),
                    step=step,
                    work=work,
                    attempt=attempt,
                    max_attempts=max_attempts,
                    job_id=context.job.id,
                )
            finally:
                metrics.JOBS.labels(task=task_name, outcome=outcome).inc()

        task.__name__ = task_name
        app.task(name=task_name, retry=retry, pass_context=True)(task)

    for step, work in WORK.items():
        step_task(step, work)

    @app.task(name="sweep_uploads", queueing_lock="sweep_uploads", priority=UPKEEP_PRIORITY)
    def sweep_uploads(timestamp: int) -> None:
        """HEAD pending uploads (stores without notifications; restarts)."""
        report = env.tracker.sweep()
        if report.settled or report.expired:
            log.info("uploads swept", settled=report.settled, expired=report.expired)

    interval = env.settings.upload_sweep_interval_seconds
    if interval > 0:
        app.periodic(cron=sweep_cron(interval), periodic_id="sweep")(sweep_uploads)

    @app.periodic(cron="* * * * *", periodic_id="reconcile")
    @app.task(name="reconcile_steps", queueing_lock="reconcile_steps", priority=UPKEEP_PRIORITY)
    def reconcile_steps(timestamp: int) -> None:
        """Queue again every step that lost its job."""
        with env.db.transaction() as session:
            queued = steps.reconcile(session)
        if queued:
            log.warning("steps without a job were queued again", count=queued)

    @app.task(name=ERASE_PROJECT, retry=retry)
    def erase_project(project_id: str) -> None:
        """Erase a project whose deletion was requested (DELETE /v1/projects/{id})."""
        eraser = ProjectEraser(db=env.db, store=env.store, index=env.face_index)
        deletion = eraser.run(uuid.UUID(project_id), now=lambda: datetime.now(UTC))
        log.info("project erased", project_id=project_id, photos=deletion.photos_erased)

    @app.periodic(cron="17 * * * *", periodic_id="retention")
    @app.task(name="expire_selfies", queueing_lock="expire_selfies", priority=UPKEEP_PRIORITY)
    def expire_selfies(timestamp: int) -> None:
        """The retention schedule: selfies and their face vectors older than
        SELFIE_RETENTION_DAYS; photo face vectors PHOTO_FACE_RETENTION_DAYS after their
        project's end (faces/retention.py)."""
        report = run_retention(env)
        if report.selfies:
            log.info("selfies past retention erased", selfies=report.selfies, faces=report.faces)
        projects = run_photo_face_retention(env)
        if projects:
            log.info(
                "photo face vectors past retention erased",
                projects=len(projects),
                faces=sum(projects.values()),
            )

    @app.periodic(cron="* * * * * */20", periodic_id="stalled")
    @app.task(
        name="retry_stalled_jobs",
        queueing_lock="retry_stalled_jobs",
        pass_context=True,
        priority=UPKEEP_PRIORITY,
    )
    async def retry_stalled_jobs(context: procrastinate.JobContext, timestamp: int) -> None:
        """Jobs of workers that died (SIGKILL, lost machine) go back to the queue."""
        await retry_stalled(context.app, env.settings.worker_stalled_seconds)


def run_retention(env: JobEnv) -> RetentionReport:
    """Erase every selfie past `SELFIE_RETENTION_DAYS`, a batch per transaction."""
    cutoff = datetime.now(UTC) - timedelta(days=env.settings.selfie_retention_days)
    total = RetentionReport()
    while True:
        with env.db.transaction() as session:
            report = expire_selfies(session, env.store, env.face_index, cutoff=cutoff)
        total.selfies += report.selfies
        total.faces += report.faces
        if not report.selfies:
            return total


def run_photo_face_retention(env: JobEnv) -> dict[uuid.UUID, int]:
    """Erase the photo-face descriptors of every project past `PHOTO_FACE_RETENTION_DAYS` after
    its end, a few projects per transaction; returns {project id: faces erased}."""
    cutoff = datetime.now(UTC) - timedelta(days=env.settings.photo_face_retention_days)
    erased: dict[uuid.UUID, int] = {}
    while True:
        with env.db.transaction() as session:
            lock_matching(session)
            batch = expire_photo_faces(session, env.face_index, cutoff=cutoff)
        erased.update(batch)
        if not batch:
            return erased


def sweep_cron(interval_seconds: float) -> str:
    """A cron line for "every N seconds" (N rounded to a divisor of 60), else every minute."""
    seconds = int(interval_seconds)
    if 1 <= seconds < 60:
        step = max(d for d in (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30) if d <= seconds)
        return f"* * * * * */{step}"
    return "* * * * *"


async def retry_stalled(app: procrastinate.App, seconds_since_heartbeat: float) -> int:
    stalled = await app.job_manager.get_stalled_jobs(
        seconds_since_heartbeat=seconds_since_heartbeat
    )
    count = 0
    for job in stalled:
        await app.job_manager.retry_job(job)
        count += 1
    if count:
        logging.getLogger(__name__).warning("retried %d stalled jobs", count)
    return count

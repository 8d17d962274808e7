"""Processing steps of uploads: request, begin, finish, fail, reconcile. Callers own the
transaction; these functions add and flush."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import NamedTuple

from sqlalchemy import func, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from mediaplane.jobs import queue
from mediaplane.jobs.models import ProcessingStep, StepName, StepStatus
from mediaplane.uploads import PendingUpload, UploadKind

# The spec's job names, one per step.
TASK_FOR_STEP: dict[StepName, str] = {
    StepName.THUMBNAIL: "generate_thumbnail",
    StepName.WATERMARK: "generate_watermark",
    StepName.FACES: "recognize_faces",
    StepName.SELFIE: "process_selfie",
}
STEP_FOR_TASK = {task: step for step, task in TASK_FOR_STEP.items()}

PHOTO_STEPS = (StepName.THUMBNAIL, StepName.WATERMARK)


def steps_for(kind: str, *, faces: bool) -> tuple[StepName, ...]:
    """What an uploaded object of `kind` needs; face steps only with a face engine."""
    if kind == UploadKind.PHOTO:
        return (*PHOTO_STEPS, StepName.FACES) if faces else PHOTO_STEPS
    if kind == UploadKind.SELFIE and faces:
        return (StepName.SELFIE,)
    return ()


def _now() -> datetime:
    return datetime.now(UTC)


def _enqueue(session: Session, upload_id: uuid.UUID, step: StepName) -> bool:
    return queue.defer(
        session,
        task_name=TASK_FOR_STEP[step],
        subject=str(upload_id),
        args={"upload_id": str(upload_id)},
    )


def request(
    session: Session,
    *,
    upload: PendingUpload,
    steps: Iterable[StepName],
    again: bool = False,
) -> list[StepName]:
    """Record the upload's steps as queued and queue their jobs (in this transaction).

    `again` re-queues steps that already finished (reprocessing); otherwise an existing step
    is left as it is, so requesting twice changes nothing.
    """
    wanted = list(steps)
    queued: list[StepName] = []
    for step in wanted:
        values = {
            "upload_id": upload.id,
            "step": step,
            "status": StepStatus.QUEUED,
            "attempts": 0,
            "completions": 0,
            "queued_at": _now(),
        }
        statement = insert(ProcessingStep).values(**values)
        if again:
            statement = statement.on_conflict_do_update(
                index_elements=["upload_id", "step"],
                set_={
                    "status": StepStatus.QUEUED,
                    "reason": None,
                    "attempts": 0,
                    "queued_at": _now(),
                    "started_at": None,
                    "finished_at": None,
                },
            )
        else:
            statement = statement.on_conflict_do_nothing(index_elements=["upload_id", "step"])
        if session.execute(statement.returning(ProcessingStep.step)).first() is not None:
            _enqueue(session, upload.id, step)
            queued.append(step)
    session.flush()
    return queued


def hand_off_for(*, faces: bool) -> Callable[[Session, PendingUpload], None]:
    """The `UploadTracker` hook: an upload just arrived; queue what it needs."""

    def hand_off(session: Session, upload: PendingUpload) -> None:
        request(session, upload=upload, steps=steps_for(upload.kind, faces=faces))

    return hand_off


class Run(NamedTuple):
    """A begun step. `token` (its start time) is what the run settles the step with; `attempt`
    counts this run among the step's runs since it was last requested, whichever jobs ran
    them (its own, a carrier's, a retry, a re-queued orphan's): `JOB_MAX_ATTEMPTS` bounds it."""

    token: datetime
    attempt: int


def begin(session: Session, *, upload_id: uuid.UUID, step: StepName) -> Run | None:
    """Lock the step and mark it running; return the run. None when the step is already done
    (or unknown)."""
    row = session.scalars(
        select(ProcessingStep)
        .where(ProcessingStep.upload_id == upload_id, ProcessingStep.step == step)
        .with_for_update()
    ).one_or_none()
    if row is None or row.status == StepStatus.DONE:
        return None
    row.status = StepStatus.RUNNING
    row.attempts += 1
    row.started_at = _now()
    session.flush()
    return Run(row.started_at, row.attempts)


def carry(session: Session, *, upload_id: uuid.UUID, wanted: Iterable[StepName]) -> list[StepName]:
    """Take over the `wanted` steps of the upload that are queued, never tried, and whose job
    is still waiting: the job is withdrawn from the queue, and the caller `begin`s each step
    when its turn comes (until then it shows as queued). Returns the steps taken.

    A step whose job a worker already holds is left to it (its job row is locked or no longer
    waiting), so no step ever has two runs. If the carrier dies, its retried job gives the
    carried steps their jobs back (`requeue_uncarried`), and so does `reconcile` once no job
    of the upload runs."""
    order = [s.value for s in wanted]
    rows = session.scalars(
        select(ProcessingStep)
        .where(
            ProcessingStep.upload_id == upload_id,
            ProcessingStep.step.in_(order),
            ProcessingStep.status == StepStatus.QUEUED,
            ProcessingStep.attempts == 0,
        )
        .order_by(ProcessingStep.step)
        .with_for_update(skip_locked=True)
    ).all()
    return [
        StepName(row.step)
        for row in sorted(rows, key=lambda row: order.index(row.step))
        if queue.withdraw(
            session, task_name=TASK_FOR_STEP[StepName(row.step)], subject=str(upload_id)
        )
    ]


def hand_back(
    session: Session, *, upload_id: uuid.UUID, step: StepName, run: Run, reason: str
) -> None:
    """A carried step that did not finish goes back to a job of its own (if that run still
    holds it)."""
    if _settle(session, upload_id, step, run, StepStatus.QUEUED, f"handed back: {reason}"):
        _enqueue(session, upload_id, step)


def requeue_uncarried(session: Session, *, upload_id: uuid.UUID, among: Iterable[StepName]) -> int:
    """For a retried carrier: the steps of the upload among `among` still queued or running
    with no job of their own were carried by an earlier run that did not settle them (its
    worker died, the database went away); each gets its job back. Returns how many."""
    rows = session.scalars(
        select(ProcessingStep).where(
            ProcessingStep.upload_id == upload_id,
            ProcessingStep.step.in_([s.value for s in among]),
            ProcessingStep.status.in_([StepStatus.QUEUED, StepStatus.RUNNING]),
        )
    ).all()
    return sum(
        1
        for row in rows
        if not queue.waiting_or_running(
            session, task_name=TASK_FOR_STEP[StepName(row.step)], subject=str(upload_id)
        )
        and _enqueue(session, upload_id, StepName(row.step))
    )


def release(session: Session, *, upload_id: uuid.UUID, step: StepName) -> None:
    """A carried step its carrier never began (the carrier failed first): back to a job of its
    own, as if never carried."""
    _enqueue(session, upload_id, step)


def finish(session: Session, *, upload_id: uuid.UUID, step: StepName, run: Run) -> None:
    _settle(session, upload_id, step, run, StepStatus.DONE, None)


def fail(session: Session, *, upload_id: uuid.UUID, step: StepName, run: Run, reason: str) -> None:
    """The step failed for good: the reason is shown to clients and in the CLI."""
    _settle(session, upload_id, step, run, StepStatus.FAILED, reason)


def retry_later(
    session: Session, *, upload_id: uuid.UUID, step: StepName, run: Run, reason: str
) -> None:
    """A transient failure: back to queued (the job queue retries it with backoff)."""
    _settle(session, upload_id, step, run, StepStatus.QUEUED, f"retrying: {reason}")


def _settle(
    session: Session,
    upload_id: uuid.UUID,
    step: StepName,
    run: Run,
    status: StepStatus,
    reason: str | None,
) -> bool:
    row = session.get(ProcessingStep, (upload_id, step), with_for_update=True)
    # Only the run that began the step may settle it: a step re-queued (reprocess) while an
    # older run was still going must wait for its new run, not take the old run's result.
    if row is None or row.started_at != run.token or row.status != StepStatus.RUNNING:
        return False
    row.status = status
    row.reason = reason
    row.finished_at = _now() if status in (StepStatus.DONE, StepStatus.FAILED) else None
    if status == StepStatus.DONE:
        row.completions += 1
    session.flush()
    return True


def list_for(session: Session, *, upload_ids: Iterable[uuid.UUID]) -> list[ProcessingStep]:
    ids = list(upload_ids)
    if not ids:
        return []
    query = select(ProcessingStep).where(ProcessingStep.upload_id.in_(ids))
    return list(session.scalars(query.order_by(ProcessingStep.step)))


# Steps that should have a job but have none waiting or running: a lost enqueue, a job row
# deleted by hand, a queue restored from an older backup. A step carried by another job of its
# upload (`carry`) has no job of its own: it is held while any job of its upload runs.
_ORPHANS = text(
    """
    SELECT s.upload_id, s.step
    FROM processing_steps s
    WHERE s.status IN ('queued', 'running')
      AND NOT EXISTS (
        SELECT 1 FROM procrastinate_jobs j
        WHERE j.queueing_lock = (CAST(:prefix_map AS jsonb) ->> s.step) || ':' || s.upload_id::text
          AND j.status IN ('todo', 'doing')
      )
      AND NOT EXISTS (
        SELECT 1 FROM procrastinate_jobs j
        WHERE j.queueing_lock IN (
            SELECT task || ':' || s.upload_id::text
            FROM jsonb_each_text(CAST(:prefix_map AS jsonb)) AS t(step, task)
          )
          AND j.status = 'doing'
      )
    ORDER BY s.queued_at
    LIMIT :limit
    FOR UPDATE OF s SKIP LOCKED
    """
)


def reconcile(session: Session, *, limit: int = 1000) -> int:
    """Queue again every step left without a job; return how many were queued."""
    prefix_map = json.dumps({step.value: task for step, task in TASK_FOR_STEP.items()})
    rows = session.execute(_ORPHANS.bindparams(limit=limit), {"prefix_map": prefix_map}).all()
    return sum(1 for upload_id, step in rows if _enqueue(session, upload_id, StepName(step)))


def counts(session: Session) -> dict[tuple[str, str], int]:
    """{(step, status): count} over every upload."""
    query = select(ProcessingStep.step, ProcessingStep.status, func.count()).group_by(
        ProcessingStep.step, ProcessingStep.status
    )
    return {(step, status): n for step, status, n in session.execute(query).all()}

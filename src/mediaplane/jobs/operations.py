"""What operators ask of the pipeline: how it is doing, what failed and why, and doing it again.

The service behind `mediaplane jobs` and `mediaplane reprocess` (the CLI only parses and
renders). Every answer is read from PostgreSQL, so it is the same truth whichever machine asks
and however many workers run. Callers own the transaction; `reprocess` adds and flushes.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import case, func, select, text
from sqlalchemy.orm import Session

from mediaplane.errors import InvalidInput
from mediaplane.jobs import steps as job_steps
from mediaplane.jobs.models import ProcessingStep, StepName, StepStatus
from mediaplane.uploads import PendingUpload, UploadKind, UploadStatus

# (a, b) -> count: (step, status), (task, status), (kind, status).
Counts = dict[tuple[str, str], int]

_QUEUE_DEPTH = text(
    "SELECT task_name, status::text, count(*) FROM procrastinate_jobs "
    "WHERE status IN ('todo', 'doing') GROUP BY 1, 2"
)


class StepNotEnabled(InvalidInput):
    """A step was asked for that photos do not go through (faces before an engine is wired)."""

    def __init__(self, step: StepName) -> None:
        super().__init__("step_not_enabled", f"{step} processing is not enabled")
        self.step = step


@dataclass(frozen=True)
class Summary:
    """The pipeline at a glance: steps, queue depth (waiting and running jobs), uploads."""

    steps: Counts
    queue: Counts
    uploads: Counts


@dataclass(frozen=True)
class Failure:
    """A step that failed for good, with the reason clients and operators see."""

    photo_id: uuid.UUID
    project_id: uuid.UUID | None
    step: str
    reason: str | None
    attempts: int
    finished_at: datetime | None


def summary(session: Session) -> Summary:
    """Steps by step and status, queued/running jobs by task, uploads by kind and status."""
    uploads_query = select(PendingUpload.kind, PendingUpload.status, func.count()).group_by(
        PendingUpload.kind, PendingUpload.status
    )
    return Summary(
        steps=job_steps.counts(session),
        queue={(task, status): n for task, status, n in session.execute(_QUEUE_DEPTH)},
        uploads={(kind, status): n for kind, status, n in session.execute(uploads_query)},
    )


def failures(
    session: Session,
    *,
    limit: int = 50,
    upload_ids: Collection[uuid.UUID] | None = None,
    steps: Collection[StepName] | None = None,
) -> list[Failure]:
    """Failed steps, newest first; `upload_ids` and `steps` narrow it (a reprocess's report)."""
    query = (
        select(ProcessingStep, PendingUpload.project_id)
        .join(PendingUpload, PendingUpload.id == ProcessingStep.upload_id)
        .where(ProcessingStep.status == StepStatus.FAILED)
    )
    if upload_ids is not None:
        query = query.where(ProcessingStep.upload_id.in_(list(upload_ids)))
    if steps is not None:
        query = query.where(ProcessingStep.step.in_([str(s) for s in steps]))
    query = query.order_by(
        ProcessingStep.finished_at.desc().nulls_last(),
        ProcessingStep.upload_id,
        ProcessingStep.step,
    ).limit(limit)
    return [
        Failure(
            photo_id=row.upload_id,
            project_id=project_id,
            step=row.step,
            reason=row.reason,
            attempts=row.attempts,
            finished_at=row.finished_at,
        )
        for row, project_id in session.execute(query)
    ]


def photo_steps(
    requested: Iterable[StepName] | None = None, *, faces_enabled: bool = False
) -> list[StepName]:
    """The steps to run on photos: `requested`, or all of them; StepNotEnabled if one is not
    a photo step here (`--step faces` is refused while FACE_ENGINE is off)."""
    enabled = job_steps.steps_for(UploadKind.PHOTO, faces=faces_enabled)
    if requested is None:
        return list(enabled)
    chosen: list[StepName] = []
    for step in requested:
        if step not in enabled:
            raise StepNotEnabled(step)
        if step not in chosen:
            chosen.append(step)
    return chosen


def select_for_reprocess(
    session: Session, *, project_id: uuid.UUID | None, photo_id: uuid.UUID | None
) -> list[PendingUpload]:
    """Uploaded photos of a project, or one uploaded photo (pending or rejected ones have no
    original to work from). At least one of `project_id`, `photo_id` is required."""
    if project_id is None and photo_id is None:
        raise ValueError("select_for_reprocess needs project_id or photo_id")
    query = select(PendingUpload).where(
        PendingUpload.kind == UploadKind.PHOTO, PendingUpload.status == UploadStatus.UPLOADED
    )
    if project_id is not None:
        query = query.where(PendingUpload.project_id == project_id)
    if photo_id is not None:
        query = query.where(PendingUpload.id == photo_id)
    return list(session.scalars(query.order_by(PendingUpload.created_at, PendingUpload.id)))


def reprocess(
    session: Session, *, uploads: Sequence[PendingUpload], steps: Sequence[StepName]
) -> int:
    """Queue `steps` of `uploads` again, finished or not; returns how many steps were queued.

    Derivatives are rewritten at the same keys, so clients keep their URLs.
    """
    return sum(
        len(job_steps.request(session, upload=upload, steps=steps, again=True))
        for upload in uploads
    )


def progress(
    session: Session, *, upload_ids: Collection[uuid.UUID], steps: Collection[StepName]
) -> tuple[int, int, int]:
    """(done, failed, total) over `steps` of `upload_ids`: done + failed == total once all
    settled. A step waiting for a retry counts as neither: it is still queued."""
    ids = list(upload_ids)
    if not ids or not steps:
        return 0, 0, 0
    query = select(
        func.count(case((ProcessingStep.status == StepStatus.DONE, 1))),
        func.count(case((ProcessingStep.status == StepStatus.FAILED, 1))),
        func.count(),
    ).where(
        ProcessingStep.upload_id.in_(ids),
        ProcessingStep.step.in_([str(s) for s in steps]),
    )
    done, failed, total = session.execute(query).one()
    return done, failed, total

"""The durable job queue: procrastinate on the service's own PostgreSQL.

Jobs are enqueued with procrastinate's SQL function inside the caller's transaction, so a step
is recorded and its job queued in one commit: there is no moment where an upload is marked
for processing but its job does not exist. A `queueing_lock` per (task, upload) keeps at most
one waiting job per step, so every path that enqueues (hand-off, reconciler, reprocess) may do
so blindly.
"""

from __future__ import annotations

import json

import procrastinate
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from mediaplane.db.engine import libpq_url

DEFAULT_QUEUE = "default"

_DEFER = text(
    """
    SELECT procrastinate_defer_jobs_v1(ARRAY[
      ROW(:queue, :task, :priority, NULL, :queueing_lock, CAST(:args AS jsonb), NULL)
    ]::procrastinate_job_to_defer_v1[])
    """
)


def queueing_lock(task_name: str, subject: str) -> str:
    return f"{task_name}:{subject}"


def defer(
    session: Session, *, task_name: str, subject: str, args: dict[str, str], priority: int = 0
) -> bool:
    """Queue `task_name(**args)` in the session's transaction; False if one is already waiting."""
    try:
        # A savepoint: a duplicate (same queueing lock, still waiting) must not abort the
        # caller's transaction.
        with session.begin_nested():
            session.execute(
                _DEFER,
                {
                    "queue": DEFAULT_QUEUE,
                    "task": task_name,
                    "priority": priority,
                    "queueing_lock": queueing_lock(task_name, subject),
                    "args": json.dumps(args),
                },
            )
    except IntegrityError:
        return False
    return True


def withdraw(session: Session, *, task_name: str, subject: str) -> bool:
    """Take a job that no worker has fetched yet out of the queue (its work is being done by
    another job); False when there is none waiting, or a worker holds it. A worker fetching it
    at this moment locks the row first: this then waits and finds it no longer waiting."""
    withdrawn = session.execute(
        text(
            "DELETE FROM procrastinate_jobs"
            " WHERE queueing_lock = :lock AND status = 'todo'"
            " AND (scheduled_at IS NULL OR scheduled_at <= now())"
            " RETURNING id"
        ),
        {"lock": queueing_lock(task_name, subject)},
    ).first()
    return withdrawn is not None


def waiting_or_running(session: Session, *, task_name: str, subject: str) -> bool:
    """Whether the job of this task and subject is in the queue or held by a worker."""
    found = session.execute(
        text(
            "SELECT 1 FROM procrastinate_jobs"
            " WHERE queueing_lock = :lock AND status IN ('todo', 'doing') LIMIT 1"
        ),
        {"lock": queueing_lock(task_name, subject)},
    ).first()
    return found is not None


def cancel_waiting(session: Session, *, upload_ids: list[str]) -> int:
    """Drop the jobs still waiting for these uploads (erased ones): a running job finishes and
    finds its upload gone."""
    result = session.execute(
        text(
            "DELETE FROM procrastinate_jobs"
            " WHERE status = 'todo' AND args->>'upload_id' = ANY(:ids)"
        ),
        {"ids": upload_ids},
    )
    return int(getattr(result, "rowcount", 0) or 0)


def build_app(database_url: str) -> procrastinate.App:
    """A procrastinate App on `database_url`; tasks are added by `tasks.register`."""
    connector = procrastinate.PsycopgConnector(
        conninfo=libpq_url(database_url), min_size=1, max_size=4
    )
    return procrastinate.App(connector=connector)

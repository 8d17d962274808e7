"""Prometheus metrics of the pipeline. Gauges that describe shared state (queue depth, upload
states) are read from PostgreSQL at scrape time, so every process reports the same truth."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from mediaplane.db import Database
from mediaplane.faults import outage_of

JOBS = Counter("mediaplane_jobs_total", "Jobs run, by task and outcome.", ["task", "outcome"])
STEP_DURATION = Histogram(
    "mediaplane_step_duration_seconds",
    "Wall time of processing steps that finished.",
    ["step"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60),
)

STEP_CPU = Counter(
    "mediaplane_step_cpu_seconds",
    "CPU time of this process while processing steps ran, by step (exact with one job at a "
    "time, as `worker --concurrency 1`; shared out between overlapping steps otherwise).",
    ["step"],
)


class DatabaseGauges(Collector):
    """Queue depth by task and status, uploads by kind and status, steps by status; and whether
    the database answered."""

    _UP_DOC = "1 when the database answered this scrape, else 0."

    def __init__(self, db: Database) -> None:
        self._db = db

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from mediaplane.jobs.operations import summary

        try:
            with self._db.transaction() as session:
                state = summary(session)
        except Exception as exc:
            if outage_of(exc) is None:
                raise
            # The database is down: say so, and let the scrape succeed with the other metrics.
            yield GaugeMetricFamily("mediaplane_database_up", self._UP_DOC, value=0)
            return
        yield GaugeMetricFamily("mediaplane_database_up", self._UP_DOC, value=1)
        families = (
            (
                "mediaplane_queue_jobs",
                "Jobs in the queue by task and status.",
                ["task", "status"],
                state.queue,
            ),
            (
                "mediaplane_uploads",
                "Uploads by kind and status.",
                ["kind", "status"],
                state.uploads,
            ),
            (
                "mediaplane_steps",
                "Processing steps by step and status.",
                ["step", "status"],
                state.steps,
            ),
        )
        for name, doc, labels, counts in families:
            family = GaugeMetricFamily(name, doc, labels=labels)
            for key, value in counts.items():
                family.add_metric(list(key), value)
            yield family

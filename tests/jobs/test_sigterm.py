"""SIGTERM (a deploy, `docker stop`, Kubernetes scaling down) while a step runs: the worker
finishes what it started, takes nothing new, and leaves no step `running` behind."""

from __future__ import annotations

import signal
from datetime import UTC, datetime

import pytest
import pyvips
from sqlalchemy import text

from mediaplane.jobs.models import StepStatus
from tests.jobs.helpers import drain, start_worker, steps_of, upload_photo, wait_until
from tests.jobs.test_workers import large_jpeg

pytestmark = pytest.mark.slow


def job_statuses(app) -> list[str]:
    with app.state.db.transaction() as session:
        return list(session.scalars(text("SELECT status::text FROM procrastinate_jobs")))


def test_sigterm_lets_the_running_step_finish_and_leaves_nothing_running(
    client, app, runtime, settings, make_token
) -> None:
    token = make_token(aud="media", roles=["photographer"])
    # 24 MP photos: a step takes long enough here that the signal lands while it runs.
    photos = [upload_photo(client, token, large_jpeg(i)) for i in range(2)]
    worker = start_worker(settings, concurrency=1)
    try:
        wait_until(
            lambda: any(s.status == StepStatus.RUNNING for s in steps_of(app)),
            timeout=60,
            interval=0.02,
        )
        running = {(s.upload_id, s.step) for s in steps_of(app) if s.status == StepStatus.RUNNING}
        signalled = datetime.now(UTC)
        worker.send_signal(signal.SIGTERM)
        code = worker.wait(timeout=60)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    assert worker.stderr is not None
    assert code == 0, worker.stderr.read().decode(errors="replace")[-2000:]

    rows = steps_of(app)
    # What ran when the signal came finished; nothing is left running, the rest is queued.
    assert len(running) == 1
    interrupted = [s for s in rows if (s.upload_id, s.step) in running]
    assert [s.status for s in interrupted] == [StepStatus.DONE]
    assert interrupted[0].finished_at is not None
    assert interrupted[0].finished_at > signalled, "the step was still running at the signal"
    assert len(rows) == 2 * len(photos)
    assert {s.status for s in rows} <= {StepStatus.DONE, StepStatus.QUEUED}
    assert StepStatus.QUEUED in {s.status for s in rows}, "the worker stopped taking new jobs"
    assert set(job_statuses(app)) == {"todo"}  # the queued steps' jobs wait; none is doing

    # The steps left queued are a new worker's work, done once each.
    drain(app)
    rows = steps_of(app)
    assert {(s.status, s.attempts, s.completions) for s in rows} == {(StepStatus.DONE, 1, 1)}
    for photo in photos:
        thumb = runtime.store.read(photo["key"].replace("original", "thumb-800"))
        assert pyvips.Image.new_from_buffer(thumb, "").width == 800

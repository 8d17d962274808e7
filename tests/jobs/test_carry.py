"""A photo's first job carries the photo's other steps whose jobs still wait, so that the
original is decoded once for all of them (jobs/tasks.py `run_step`, imaging `Original`)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from mediaplane.imaging import derivatives as imaging_derivatives
from mediaplane.jobs import derivatives as job_derivatives
from mediaplane.jobs import steps as job_steps
from mediaplane.jobs import tasks as job_tasks
from mediaplane.jobs.models import StepName, StepStatus
from tests.jobs.helpers import drain, make_waiting_jobs_due, steps_of, upload_photo

FACES = Path(__file__).parents[1] / "fixtures" / "faces"


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    return {"face_engine": "local"}


@pytest.fixture
def photographer(make_token) -> str:
    return make_token(aud="media", roles=["photographer"], sub="ph-carry")


@pytest.fixture
def decodes(monkeypatch) -> list[int]:
    """One entry per decode of an original's pixels by the photo steps."""
    counted: list[int] = []
    real = imaging_derivatives.Original._decode

    def counting(self, *args):
        counted.append(1)
        return real(self, *args)

    monkeypatch.setattr(imaging_derivatives.Original, "_decode", counting)
    return counted


def one_at_a_time(app) -> None:
    """Run the queue with one job at a time (as `mediaplane worker --concurrency 1`), so the
    first job of a photo finds its siblings' jobs still waiting."""
    drain(app, concurrency=1)


def jobs(app) -> list[tuple[str, str]]:
    with app.state.db.transaction() as session:
        rows = session.execute(text("SELECT task_name, status FROM procrastinate_jobs"))
        return sorted((str(name), str(status)) for name, status in rows)


def retry_thumbnail_by_hand(app, upload_id: uuid.UUID) -> str:
    """The second run of the photo's thumbnail job, as procrastinate would start it."""
    return job_tasks.run_step(
        app.state.jobs,
        upload_id=upload_id,
        step=StepName.THUMBNAIL,
        work=job_tasks.WORK[StepName.THUMBNAIL],
        attempt=2,
        max_attempts=5,
        job_id=None,
    )


def settled(app) -> set[tuple[str, str, int, int]]:
    return {(s.step, s.status, s.attempts, s.completions) for s in steps_of(app)}


def test_a_photo_is_decoded_once_for_its_three_steps(
    client, app, photographer, decodes, monkeypatch
) -> None:
    started: list[str] = []
    real = job_tasks._run_one

    def recording(env, upload, step, *args, **kwargs):
        started.append(step.value)
        return real(env, upload, step, *args, **kwargs)

    monkeypatch.setattr(job_tasks, "_run_one", recording)
    upload_photo(client, photographer, (FACES / "obama_and_biden.jpg").read_bytes())
    one_at_a_time(app)

    assert settled(app) == {
        ("thumbnail", StepStatus.DONE, 1, 1),
        ("watermark", StepStatus.DONE, 1, 1),
        ("faces", StepStatus.DONE, 1, 1),
    }
    assert len(decodes) == 1  # three steps, one decode
    assert started == ["thumbnail", "watermark", "faces"]  # what people see first, first
    assert jobs(app) == []  # the carried steps' jobs were withdrawn, none ran for nothing


def test_with_carrying_off_each_step_decodes_the_photo_again(
    client, app, photographer, decodes, monkeypatch
) -> None:
    # The same photo with CARRY_PHOTO_STEPS=false: the figure the test above improves on.
    env = app.state.jobs
    monkeypatch.setattr(
        env, "settings", env.settings.model_copy(update={"carry_photo_steps": False})
    )
    upload_photo(client, photographer, (FACES / "obama_and_biden.jpg").read_bytes())
    one_at_a_time(app)
    assert {(s.step, s.status) for s in steps_of(app)} == {
        ("thumbnail", StepStatus.DONE),
        ("watermark", StepStatus.DONE),
        ("faces", StepStatus.DONE),
    }
    assert len(decodes) == 3


def test_a_step_a_worker_already_holds_is_not_carried(client, app, photographer) -> None:
    body = upload_photo(client, photographer, (FACES / "obama_2.jpg").read_bytes())
    upload_id = uuid.UUID(body["photoId"])
    with app.state.db.transaction() as session:
        # Another worker fetched the watermark's job a moment ago.
        session.execute(
            text("UPDATE procrastinate_jobs SET status = 'doing' WHERE task_name = :task"),
            {"task": "generate_watermark"},
        )
        carried = job_steps.carry(
            session, upload_id=upload_id, wanted=[StepName.WATERMARK, StepName.FACES]
        )
    assert carried == [StepName.FACES]
    assert jobs(app) == [
        ("generate_thumbnail", "todo"),
        ("generate_watermark", "doing"),
    ]


def test_a_carried_step_that_fails_goes_back_to_a_job_of_its_own(
    client, app, photographer, monkeypatch
) -> None:
    failures: list[str] = []
    real = job_derivatives.watermark

    def flaky(store, settings, photo, original):
        if not failures:
            failures.append("once")
            raise ConnectionError("object store hiccup")
        return real(store, settings, photo, original)

    monkeypatch.setattr(job_derivatives, "watermark", flaky)
    upload_photo(client, photographer, (FACES / "obama_2.jpg").read_bytes())
    one_at_a_time(app)
    # Carried by the thumbnail's job, failed there, done by a job of its own: two runs.
    assert settled(app) == {
        ("thumbnail", StepStatus.DONE, 1, 1),
        ("watermark", StepStatus.DONE, 2, 1),
        ("faces", StepStatus.DONE, 1, 1),
    }
    assert failures == ["once"]
    assert {s.step: s.reason for s in steps_of(app)}["watermark"] is None


def test_a_handed_back_step_runs_no_more_than_job_max_attempts_in_all(
    client, app, photographer, monkeypatch
) -> None:
    runs: list[int] = []

    def broken(store, settings, photo, original):
        runs.append(1)
        raise ConnectionError("object store down for this key")

    monkeypatch.setattr(job_derivatives, "watermark", broken)
    upload_photo(client, photographer, (FACES / "obama_2.jpg").read_bytes())
    one_at_a_time(app)  # carried and handed back, then its own job's first run
    for _ in range(10):  # its retries, each made due at once (the backoff is not the point)
        if not make_waiting_jobs_due(app):
            break
        drain(app, concurrency=1)
    max_attempts = app.state.jobs.settings.job_max_attempts
    # One run in the carrier's job counts: its own job gives it the rest, not a fresh set.
    assert len(runs) == max_attempts
    rows = {s.step: s for s in steps_of(app)}
    assert (rows["watermark"].status, rows["watermark"].attempts) == (
        StepStatus.FAILED,
        max_attempts,
    )
    assert rows["watermark"].reason == "ConnectionError: object store down for this key"
    assert jobs(app) == []  # nothing left to run it again
    assert rows["thumbnail"].status == rows["faces"].status == StepStatus.DONE


def test_when_the_carrier_fails_first_what_it_carried_runs_on_its_own(
    client, app, photographer, monkeypatch
) -> None:
    def broken(store, settings, photo, original):
        raise ConnectionError("object store down")

    monkeypatch.setattr(job_derivatives, "thumbnails", broken)
    upload_photo(client, photographer, (FACES / "obama_2.jpg").read_bytes())
    one_at_a_time(app)
    rows = {s.step: s for s in steps_of(app)}
    assert rows["thumbnail"].status == StepStatus.QUEUED  # its retry waits (backoff)
    assert rows["thumbnail"].reason is not None
    assert rows["thumbnail"].reason.startswith("retrying: ConnectionError")
    # Never begun by the carrier, so their one attempt is their own job's.
    assert (rows["watermark"].status, rows["watermark"].attempts) == (StepStatus.DONE, 1)
    assert (rows["faces"].status, rows["faces"].attempts) == (StepStatus.DONE, 1)


def test_a_carried_step_is_not_queued_again_while_its_carrier_runs(
    client, app, photographer
) -> None:
    body = upload_photo(client, photographer, (FACES / "obama_2.jpg").read_bytes())
    upload_id = uuid.UUID(body["photoId"])
    with app.state.db.transaction() as session:
        carried = job_steps.carry(
            session, upload_id=upload_id, wanted=[StepName.WATERMARK, StepName.FACES]
        )
        assert carried == [StepName.WATERMARK, StepName.FACES]
        session.execute(
            text("UPDATE procrastinate_jobs SET status = 'doing' WHERE task_name = :task"),
            {"task": "generate_thumbnail"},
        )
    with app.state.db.transaction() as session:
        assert job_steps.reconcile(session) == 0  # held by the running carrier
    with app.state.db.transaction() as session:
        # The carrier is gone (its row deleted, as a finished job's is): both come back.
        session.execute(text("DELETE FROM procrastinate_jobs"))
    with app.state.db.transaction() as session:
        assert job_steps.reconcile(session) == 3
    assert [name for name, _ in jobs(app)] == [
        "generate_thumbnail",
        "generate_watermark",
        "recognize_faces",
    ]


def test_a_retried_carrier_gives_back_what_its_dead_run_carried(client, app, photographer) -> None:
    body = upload_photo(client, photographer, (FACES / "obama_2.jpg").read_bytes())
    upload_id = uuid.UUID(body["photoId"])
    with app.state.db.transaction() as session:
        # A first run carried both siblings, then its worker died (SIGKILL): its job is
        # retried, and the siblings have no job at all.
        job_steps.carry(session, upload_id=upload_id, wanted=[StepName.WATERMARK, StepName.FACES])
        job_steps.begin(session, upload_id=upload_id, step=StepName.THUMBNAIL)
    outcome = retry_thumbnail_by_hand(app, upload_id)
    assert outcome == "done"
    assert [name for name, _ in jobs(app)] == [
        "generate_thumbnail",  # the retried job's own row (run here by hand)
        "generate_watermark",
        "recognize_faces",
    ]


def test_a_carried_step_left_unsettled_by_a_database_blip_comes_back(
    client, app, photographer, monkeypatch
) -> None:
    real_finish = job_steps.finish
    blips: list[StepName] = []

    def finish_with_a_blip(session, *, upload_id, step, run):
        if step == StepName.WATERMARK and not blips:
            blips.append(step)
            raise OperationalError("UPDATE processing_steps", {}, Exception("server closed"))
        return real_finish(session, upload_id=upload_id, step=step, run=run)

    monkeypatch.setattr(job_steps, "finish", finish_with_a_blip)
    # The reconciler would also give the step its job back, if a minute turns while this
    # runs: off here, so the retried carrier is what is tested.
    monkeypatch.setattr(job_steps, "reconcile", lambda session, **kwargs: 0)
    env = app.state.jobs  # the failed job's retry waits a minute: it is run by hand below
    monkeypatch.setattr(
        env, "settings", env.settings.model_copy(update={"job_retry_base_seconds": 60})
    )
    body = upload_photo(client, photographer, (FACES / "obama_2.jpg").read_bytes())
    upload_id = uuid.UUID(body["photoId"])
    one_at_a_time(app)
    rows = {s.step: s.status for s in steps_of(app)}
    # The thumbnail is done; the carried watermark was worked but not settled, and the job
    # failed with the blip (its retry waits for its backoff).
    assert rows["thumbnail"] == StepStatus.DONE
    assert rows["watermark"] == StepStatus.RUNNING
    assert ("generate_watermark", "todo") not in jobs(app)

    # The retry of the thumbnail's job: its step is done, and it gives the watermark its job.
    outcome = retry_thumbnail_by_hand(app, upload_id)
    assert outcome == "skipped"
    assert ("generate_watermark", "todo") in jobs(app)
    one_at_a_time(app)
    assert {(s.step, s.status, s.completions) for s in steps_of(app)} == {
        ("thumbnail", StepStatus.DONE, 1),
        ("watermark", StepStatus.DONE, 1),
        ("faces", StepStatus.DONE, 1),
    }

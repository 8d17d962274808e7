"""The operations service on real uploads: summary, failures, and reprocessing a project."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from mediaplane.jobs import operations
from mediaplane.jobs.models import StepName, StepStatus
from mediaplane.jobs.tasks import PERIODIC_TASKS
from tests.imaging import factories
from tests.jobs.helpers import drain, steps_of, upload_photo

PHOTO_STEPS = [StepName.THUMBNAIL, StepName.WATERMARK]


@dataclass
class Project:
    id: uuid.UUID
    good: list[uuid.UUID]
    corrupt: uuid.UUID
    elsewhere: uuid.UUID  # a photo of another project


@pytest.fixture
def photographer(make_token) -> str:
    return make_token(aud="media", roles=["photographer"], sub="ph-ops")


def upload_project(client: TestClient, token: str) -> Project:
    """Two good photos and a corrupt one in a project, one good photo in another."""
    project = uuid.uuid4()

    def photo_id(data: bytes, in_project: uuid.UUID) -> uuid.UUID:
        return uuid.UUID(upload_photo(client, token, data, in_project)["photoId"])

    good = [photo_id(factories.jpeg_bytes(640, 480), project) for _ in range(2)]
    corrupt = photo_id(factories.truncated_jpeg(), project)
    elsewhere = photo_id(factories.jpeg_bytes(320, 240), uuid.uuid4())
    return Project(id=project, good=good, corrupt=corrupt, elsewhere=elsewhere)


def test_summary_counts_queue_then_steps_and_uploads(client, app: FastAPI, photographer) -> None:
    upload_project(client, photographer)
    with app.state.db.transaction() as session:
        waiting = operations.summary(session)
    assert waiting.queue == {("generate_thumbnail", "todo"): 4, ("generate_watermark", "todo"): 4}
    assert waiting.steps == {("thumbnail", "queued"): 4, ("watermark", "queued"): 4}

    drain(app)
    with app.state.db.transaction() as session:
        settled = operations.summary(session)
    assert settled.steps == {
        ("thumbnail", "done"): 3,
        ("thumbnail", "failed"): 1,
        ("watermark", "done"): 3,
        ("watermark", "failed"): 1,
    }
    assert not any(status == "todo" for (task, status) in settled.queue if task.startswith("gen"))
    assert settled.uploads == {("photo", "uploaded"): 4}


def test_failures_name_the_photo_its_project_and_the_reason(
    client, app: FastAPI, photographer
) -> None:
    project = upload_project(client, photographer)
    drain(app)
    with app.state.db.transaction() as session:
        failed = operations.failures(session)
        newest = operations.failures(session, limit=1)
    assert {(f.photo_id, f.project_id, f.step) for f in failed} == {
        (project.corrupt, project.id, "thumbnail"),
        (project.corrupt, project.id, "watermark"),
    }
    assert all(f.reason and f.reason.startswith("corrupt_image") for f in failed)
    assert all(f.attempts == 1 and f.finished_at is not None for f in failed)
    finished = [f.finished_at for f in failed]
    assert finished == sorted(finished, reverse=True)  # type: ignore[type-var]
    assert newest == failed[:1]


def test_select_for_reprocess_takes_uploaded_photos_only(
    client, app: FastAPI, photographer
) -> None:
    project = upload_project(client, photographer)
    # Asked for an upload URL, never uploaded: nothing to reprocess from.
    pending = client.post(
        "/v1/photos/upload-url",
        json={"projectId": str(project.id)},
        headers={"Authorization": f"Bearer {photographer}"},
    ).json()["photoId"]
    with app.state.db.transaction() as session:
        of_project = operations.select_for_reprocess(session, project_id=project.id, photo_id=None)
        one = operations.select_for_reprocess(session, project_id=None, photo_id=project.good[0])
        not_uploaded = operations.select_for_reprocess(
            session, project_id=None, photo_id=uuid.UUID(pending)
        )
        with pytest.raises(ValueError):
            operations.select_for_reprocess(session, project_id=None, photo_id=None)
    assert {u.id for u in of_project} == {*project.good, project.corrupt}
    assert [u.id for u in one] == project.good[:1]
    assert not_uploaded == []


def test_reprocess_a_project_runs_its_steps_again(client, app: FastAPI, photographer) -> None:
    project = upload_project(client, photographer)
    drain(app)
    with app.state.db.transaction() as session:
        uploads = operations.select_for_reprocess(session, project_id=project.id, photo_id=None)
        assert operations.reprocess(session, uploads=uploads, steps=PHOTO_STEPS) == 6
        ids = [u.id for u in uploads]
    with app.state.db.transaction() as session:
        assert operations.progress(session, upload_ids=ids, steps=PHOTO_STEPS) == (0, 0, 6)

    drain(app)
    with app.state.db.transaction() as session:
        assert operations.progress(session, upload_ids=ids, steps=PHOTO_STEPS) == (4, 2, 6)
        watermarks = operations.progress(session, upload_ids=ids, steps=[StepName.WATERMARK])
    assert watermarks == (2, 1, 3)
    rows = {(s.upload_id, s.step): (s.status, s.completions) for s in steps_of(app)}
    for step in PHOTO_STEPS:
        for photo in project.good:
            assert rows[photo, step] == (StepStatus.DONE, 2)  # done twice
        assert rows[project.corrupt, step] == (StepStatus.FAILED, 0)
        assert rows[project.elsewhere, step] == (StepStatus.DONE, 1)  # another project


def test_reprocess_one_step_leaves_the_others_alone(client, app: FastAPI, photographer) -> None:
    project = upload_project(client, photographer)
    drain(app)
    with app.state.db.transaction() as session:
        photo = operations.select_for_reprocess(session, project_id=None, photo_id=project.good[0])
        assert operations.reprocess(session, uploads=photo, steps=[StepName.WATERMARK]) == 1
    queued = {(s.upload_id, s.step) for s in steps_of(app) if s.status == StepStatus.QUEUED}
    assert queued == {(project.good[0], "watermark")}


def test_photo_steps_default_to_every_photo_step_and_refuse_disabled_ones() -> None:
    assert operations.photo_steps() == PHOTO_STEPS
    assert operations.photo_steps([StepName.WATERMARK, StepName.WATERMARK]) == [StepName.WATERMARK]
    with pytest.raises(operations.StepNotEnabled, match="faces processing is not enabled"):
        operations.photo_steps([StepName.FACES])


def test_upkeep_jobs_run_before_a_backlog_of_steps(
    client: TestClient, app: FastAPI, make_token
) -> None:
    """A dead worker's jobs are retried by `retry_stalled_jobs`: behind a backlog of photos it
    would wait its turn (oldest first), so upkeep jobs are taken first."""
    import asyncio

    from mediaplane.jobs.worker import build_queue

    token = make_token(aud="media", roles=["photographer"])
    for i in range(3):
        upload_photo(client, token, factories.jpeg_bytes(300 + i, 200))
    queue = build_queue(app.state.jobs)

    async def fetch_order() -> list[str]:
        async with queue.open_async():
            await queue.tasks["retry_stalled_jobs"].defer_async(timestamp=0)
            await queue.tasks["reconcile_steps"].defer_async(timestamp=0)
            first = await queue.job_manager.fetch_job(queues=None, worker_id=None)
            second = await queue.job_manager.fetch_job(queues=None, worker_id=None)
            third = await queue.job_manager.fetch_job(queues=None, worker_id=None)
            return [job.task_name for job in (first, second, third) if job is not None]

    order = asyncio.run(fetch_order())

    assert set(order[:2]) == {"retry_stalled_jobs", "reconcile_steps"}
    assert order[2] not in PERIODIC_TASKS  # then the steps, deferred earlier

"""The pipeline end to end: a photo PUT to its presigned URL ends with its derivatives."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import pyvips
from fastapi.testclient import TestClient
from sqlalchemy import text

from mediaplane.jobs import steps as job_steps
from mediaplane.jobs import tasks as job_tasks
from mediaplane.jobs.models import StepStatus
from mediaplane.uploads import service as uploads
from mediaplane.uploads.keys import derivative_key
from tests.imaging import factories
from tests.jobs.helpers import drain, steps_of, upload_photo
from tests.media_api.helpers import bearer

FIXTURES = Path(__file__).parents[1] / "fixtures"
EXIF = FIXTURES / "exif-orientation"


@pytest.fixture
def photographer(make_token) -> str:
    return make_token(aud="media", roles=["photographer"], sub="ph-1")


def derivative(runtime, photo: dict, name: str) -> pyvips.Image:
    project = uuid.UUID(photo["key"].split("/")[1])
    data = runtime.store.read(derivative_key(project, uuid.UUID(photo["photoId"]), name))
    assert factories.jpeg_metadata_segments(data) == [], name
    return pyvips.Image.new_from_buffer(data, "")


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_every_orientation_ends_with_upright_stripped_derivatives(
    client: TestClient, app, runtime, photographer: str, backend: str
) -> None:
    names = sorted(p.name for p in EXIF.glob("*.jpg"))
    photos = {
        name: upload_photo(client, photographer, (EXIF / name).read_bytes()) for name in names
    }
    drain(app)
    for name, photo in photos.items():
        landscape = name.startswith("Landscape")
        upright = (1800, 1200) if landscape else (1200, 1800)
        for width in (400, 800):
            thumb = derivative(runtime, photo, f"thumb-{width}")
            assert thumb.width == width, name
            assert thumb.height == round(width * upright[1] / upright[0]), name
        marked = derivative(runtime, photo, "watermarked")
        assert (marked.width, marked.height) == upright, name  # under 2048: never upscaled
        view = client.get(f"/v1/photos/{photo['photoId']}", headers=bearer(photographer)).json()
        assert (view["width"], view["height"]) == upright
        assert set(view["downloads"]) == {"original", "thumb-400", "thumb-800", "watermarked"}
        assert {k: v["status"] for k, v in view["steps"].items()} == {
            "thumbnail": "done",
            "watermark": "done",
        }


def test_gps_xmp_iptc_icc_never_reach_a_derivative(client, app, runtime, photographer) -> None:
    source = factories.jpeg_with_metadata()
    assert factories.jpeg_metadata_segments(source)  # the input really carries metadata
    photo = upload_photo(client, photographer, source)
    drain(app)
    for name in ("thumb-400", "thumb-800", "watermarked"):
        derivative(runtime, photo, name)  # asserts no APP1/APP2/APP13 segment


def test_every_step_gives_freed_memory_back_before_the_next_one(
    client, app, photographer, monkeypatch
) -> None:
    # The worker's peak is one step over its idle size only if what each step freed (kept in
    # glibc's arenas) is handed back before the next step starts, failed steps included.
    released: list[int] = []
    monkeypatch.setattr(job_tasks, "release_freed_memory", lambda: released.append(1) or True)
    upload_photo(client, photographer, (EXIF / "Landscape_1.jpg").read_bytes())
    upload_photo(client, photographer, factories.truncated_jpeg())
    drain(app)
    outcomes = [s.status for s in steps_of(app)]
    assert sorted(outcomes) == [StepStatus.DONE] * 2 + [StepStatus.FAILED] * 2
    assert len(released) == len(outcomes)


def test_refused_inputs_fail_their_steps_and_the_queue_goes_on(client, app, photographer) -> None:
    corrupt = upload_photo(client, photographer, factories.truncated_jpeg())
    bomb = upload_photo(client, photographer, factories.bomb_png())
    text_as_jpg = upload_photo(client, photographer, factories.text_file())
    good = upload_photo(client, photographer, factories.jpeg_bytes(900, 600))
    drain(app)
    headers = bearer(photographer)

    def view(photo: dict) -> dict:
        return client.get(f"/v1/photos/{photo['photoId']}", headers=headers).json()

    for photo, reason in ((corrupt, "corrupt_image"), (bomb, "too_many_pixels")):
        steps = view(photo)["steps"]
        for step in ("thumbnail", "watermark"):
            assert steps[step]["status"] == "failed"
            assert steps[step]["reason"].startswith(reason)
            assert steps[step]["attempts"] == 1  # refused input is not retried
    # Bytes that are no image at all are refused on arrival (Media API), before any job.
    assert (view(text_as_jpg)["status"], view(text_as_jpg)["reason"]) == (
        "rejected",
        "not_an_image",
    )
    assert view(text_as_jpg)["processing"] == {
        "status": "failed",
        "failedStep": "upload",
        "reason": "not_an_image",
    }
    assert view(good)["processing"]["status"] == "processed"
    failed = view(corrupt)["processing"]
    assert failed["status"] == "failed" and failed["failedStep"] in ("thumbnail", "watermark")
    assert failed["reason"].startswith("corrupt_image")
    assert view(text_as_jpg)["steps"] == {}
    assert {s["status"] for s in view(good)["steps"].values()} == {"done"}


def test_each_step_is_idempotent(client, app, runtime, photographer) -> None:
    photo = upload_photo(client, photographer, factories.jpeg_bytes(1200, 800, noise=True))
    drain(app)
    names = ("thumb-400", "thumb-800", "watermarked")
    before = {n: runtime.store.read(photo["key"].replace("original", n)) for n in names}
    with app.state.db.transaction() as session:
        upload = uploads.get(session, upload_id=uuid.UUID(photo["photoId"]))
        assert upload is not None
        steps = job_steps.steps_for(upload.kind, faces=False)
        assert len(job_steps.request(session, upload=upload, steps=steps, again=True)) == 2
    drain(app)
    after = {n: runtime.store.read(photo["key"].replace("original", n)) for n in names}
    assert after == before  # same keys, same bytes
    assert {(s.step, s.status, s.completions) for s in steps_of(app)} == {
        ("thumbnail", StepStatus.DONE, 2),
        ("watermark", StepStatus.DONE, 2),
    }


def test_reconciler_restores_a_deleted_job(client, app, photographer) -> None:
    upload_photo(client, photographer, factories.jpeg_bytes(640, 480))
    with app.state.db.transaction() as session:
        deleted = session.execute(
            text(
                "DELETE FROM procrastinate_jobs WHERE task_name = 'generate_thumbnail' RETURNING id"
            )
        ).all()
        assert len(deleted) == 1
    with app.state.db.transaction() as session:
        assert job_steps.reconcile(session) == 1  # only the step that lost its job
        assert job_steps.reconcile(session) == 0  # and only once
    drain(app)
    assert {(s.step, s.status) for s in steps_of(app)} == {
        ("thumbnail", StepStatus.DONE),
        ("watermark", StepStatus.DONE),
    }

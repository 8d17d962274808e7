"""Erasure, proven by listing every store (objects on both backends, rows, pgvector vectors,
queued jobs) before and after: a photo's deletion, a project's, and selfies past retention."""

from __future__ import annotations

import io
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import text

from mediaplane.faces.models import SelfieFace
from mediaplane.jobs.models import StepName
from mediaplane.jobs.tasks import run_retention, run_step
from mediaplane.settings import Settings
from mediaplane.uploads import PendingUpload, UploadStatus
from tests.jobs.helpers import drain, upload_photo, worker_env
from tests.media_api.helpers import bearer, put_to_presigned
from tests.projects.inventory import PHOTO_TABLES, inventory

FACES = Path(__file__).parents[1] / "fixtures" / "faces"
DERIVATIVES = {"original.jpg", "thumb-400.jpg", "thumb-800.jpg", "watermarked.jpg"}


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    return {"face_engine": "local"}


class Event:
    """Obama's selfie, and Pat's photos of a project in which Obama appears."""

    def __init__(self, client: TestClient, make_token, app: FastAPI) -> None:
        self.client, self.app = client, app
        self.project = uuid.uuid4()
        self.pat_token = make_token(aud="media", roles=["photographer"], sub="pat")
        self.pat = bearer(self.pat_token)
        self.olga = bearer(make_token(aud="backoffice", roles=["operator"], sub="olga"))
        self.obama = bearer(make_token(aud="media", roles=["user"], sub="obama"))
        self.photos: list[str] = []

    def setup(self, names: tuple[str, ...] = ("obama_2.jpg", "obama_and_biden.jpg")) -> None:
        resp = self.client.put("/v1/me/consents/biometric_processing", headers=self.obama)
        assert resp.status_code == 201
        selfie = self.client.post("/v1/selfie/upload-url", headers=self.obama).json()
        data = (FACES / "obama_1.jpg").read_bytes()
        assert put_to_presigned(self.client, selfie["uploadUrl"], data).status_code == 200
        done = self.client.post(f"/v1/selfie/{selfie['selfieId']}/complete", headers=self.obama)
        assert done.status_code == 200, done.text
        for name in names:
            body = upload_photo(
                self.client, self.pat_token, (FACES / name).read_bytes(), project=self.project
            )
            self.photos.append(body["photoId"])
        drain(self.app)

    def matched(self) -> set[str]:
        resp = self.client.get("/v1/me/photos", headers=self.obama)
        assert resp.status_code == 200, resp.text
        return {item["photoId"] for item in resp.json()["items"]}


def tombstones(app: FastAPI) -> int:
    with app.state.db.transaction() as session:
        query = "SELECT count(*) FROM uploads WHERE status = 'deleted' AND size IS NULL"
        return int(session.execute(text(query)).scalar_one())


def end_watches(app: FastAPI) -> None:
    """Time passes: every URL and its grace are over; the sweeper runs."""
    with app.state.db.transaction() as session:
        session.execute(
            text(
                "UPDATE uploads SET watch_until = now() - interval '1 second'"
                " WHERE watch_until IS NOT NULL"
            )
        )
    app.state.uploads.sweep()


@pytest.fixture
def event(client: TestClient, make_token, app: FastAPI) -> Event:
    return Event(client, make_token, app)


def photo_files(objects: list[str], photo: str) -> set[str]:
    return {key.rsplit("/", 1)[1] for key in objects if f"/{photo}/" in key}


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_deleting_a_photo_erases_it_from_every_store_at_once(event: Event, backend: str) -> None:
    event.setup()
    gone, kept = event.photos
    before = inventory(event.app, project=event.project, photos=[gone])
    assert photo_files(before.objects, gone) >= DERIVATIVES
    assert before.rows["uploads"] == 1
    assert before.rows["processing_steps"] == 3
    assert before.rows["photo_faces"] >= 1 and before.vectors >= 1
    assert before.rows["face_matches"] == 1
    assert event.matched() == {gone, kept}

    resp = event.client.delete(f"/v1/photos/{gone}", headers=event.pat)

    assert resp.status_code == 204, resp.text
    after = inventory(event.app, project=event.project, photos=[gone])
    assert photo_files(after.objects, gone) == set()
    assert after.vectors == 0 and after.jobs == 0
    assert {t: n for t, n in after.rows.items() if t in ("photo_faces", "face_matches")} == {
        "photo_faces": 0,
        "face_matches": 0,
    }
    assert after.rows["processing_steps"] == 0
    with event.app.state.db.transaction() as session:
        row = session.get(PendingUpload, uuid.UUID(gone))
        if backend == "local":
            assert row is None  # disk refuses any later write through the URL
        else:
            # S3 takes writes through the old URL until it expires: a tombstone keeps the key
            # watched, holding nothing of the photo.
            assert row is not None and row.status == UploadStatus.DELETED
            assert (row.size, row.width, row.derivatives, row.aside_key) == (None, None, [], None)
    assert event.matched() == {kept}
    assert event.client.get(f"/v1/photos/{gone}", headers=event.pat).status_code == 404
    # The other photo is whole.
    assert photo_files(after.objects, kept) >= DERIVATIVES


@pytest.mark.parametrize("backend", ["s3"])
def test_a_deleted_photos_key_stays_empty_on_s3_until_its_url_is_dead(
    event: Event, backend: str
) -> None:
    body = event.client.post(
        "/v1/photos/upload-url", json={"projectId": str(event.project)}, headers=event.pat
    ).json()
    data = (FACES / "obama_2.jpg").read_bytes()
    assert put_to_presigned(event.client, body["uploadUrl"], data).status_code == 200
    event.client.post(f"/v1/photos/{body['photoId']}/complete", headers=event.pat)
    assert (
        event.client.delete(f"/v1/photos/{body['photoId']}", headers=event.pat).status_code == 204
    )

    # The old URL still writes on S3; the sweeper finds the tombstone's key and empties it.
    assert put_to_presigned(event.client, body["uploadUrl"], data).status_code == 200
    tracker = event.app.state.uploads
    report = tracker.sweep()
    assert report.undone == 1
    assert event.app.state.store.head(body["key"]) is None

    # Once the URL and its grace are over, the tombstone goes too.
    end_watches(event.app)
    with event.app.state.db.transaction() as session:
        assert session.get(PendingUpload, uuid.UUID(body["photoId"])) is None


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_deleting_a_project_erases_everything_of_it_with_progress(
    event: Event, backend: str
) -> None:
    event.setup()
    before = inventory(event.app, project=event.project, photos=event.photos)
    assert len(before.objects) >= 8 and before.vectors >= 2 and before.rows["face_matches"] == 2

    resp = event.client.delete(f"/v1/projects/{event.project}", headers=event.olga)

    assert resp.status_code == 202, resp.text
    assert resp.json()["status"] == "queued"
    assert resp.json()["photosTotal"] == 2
    shown = event.client.get(f"/v1/projects/{event.project}", headers=event.olga).json()
    assert shown["deletion"]["status"] == "queued"
    # An upload into a project being deleted is refused, in open mode too.
    resp = event.client.post(
        "/v1/photos/upload-url", json={"projectId": str(event.project)}, headers=event.pat
    )
    assert resp.status_code == 409 and resp.json()["code"] == "project_deleted"

    drain(event.app)

    progress = event.client.get(f"/v1/projects/{event.project}/deletion", headers=event.olga)
    assert progress.json()["status"] == "done"
    assert progress.json()["photosErased"] == 2
    after = inventory(event.app, project=event.project, photos=event.photos)
    if backend == "s3":
        # The URLs can still write: only tombstones are left, until the sweeper drops them.
        assert after.rows["uploads"] == tombstones(event.app) == 2
        end_watches(event.app)
        after = inventory(event.app, project=event.project, photos=event.photos)
    assert after.empty, after
    assert event.client.get(f"/v1/projects/{event.project}", headers=event.olga).status_code == 404
    assert event.matched() == set()
    # Obama's own data is not the project's: the selfie stays.
    assert event.client.get("/v1/me/selfie", headers=event.obama).json()["face"]["status"] == (
        "indexed"
    )


def test_the_cli_deletes_a_project_with_a_progress_bar(event: Event, settings: Settings) -> None:
    event.setup(names=("obama_2.jpg",))
    before = inventory(event.app, project=event.project, photos=event.photos)
    assert before.objects and before.vectors

    done = subprocess.run(
        [sys.executable, "-m", "mediaplane.cli", "projects", "delete", str(event.project), "--yes"],
        env=worker_env(settings),
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert done.returncode == 0, done.stderr
    assert "erasing" in done.stderr and "1/1" in done.stderr
    assert f"project {event.project} erased: 1 photo" in done.stderr
    assert inventory(event.app, project=event.project, photos=event.photos).empty


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_selfies_past_retention_are_erased_with_their_vectors(
    event: Event, settings: Settings, backend: str
) -> None:
    event.setup(names=("obama_2.jpg",))
    store, db = event.app.state.store, event.app.state.db
    assert list(store.list("selfies/obama/"))
    with db.transaction() as session:
        assert session.get(SelfieFace, "obama") is not None
        # Still within the schedule: nothing is erased.
    assert run_retention(event.app.state.jobs).selfies == 0
    with db.transaction() as session:
        session.execute(
            text("UPDATE uploads SET created_at = :at WHERE kind = 'selfie'"),
            {"at": datetime.now(UTC) - timedelta(days=settings.selfie_retention_days, hours=1)},
        )

    report = run_retention(event.app.state.jobs)

    assert (report.selfies, report.faces) == (1, 1)
    assert [k for k in store.list("selfies/") if "obama" in k] == []
    with db.transaction() as session:
        assert session.get(SelfieFace, "obama") is None
        assert session.execute(text("SELECT count(*) FROM face_matches")).scalar_one() == 0
        vectors = "SELECT count(*) FROM selfie_faces WHERE embedding IS NOT NULL"
        assert session.execute(text(vectors)).scalar_one() == 0
        selfie = session.execute(
            text("SELECT status, reason FROM uploads WHERE kind = 'selfie'")
        ).one()
        assert tuple(selfie) == ("erased", "retention")
    assert event.client.get("/v1/me/selfie", headers=event.obama).json()["face"]["status"] == (
        "erased"
    )
    # The photos are not biometric data of the attendee: they stay.
    assert inventory(event.app, project=event.project, photos=event.photos).objects


def test_retention_is_a_periodic_task(app: FastAPI) -> None:
    from mediaplane.jobs.worker import build_queue

    queue = build_queue(app.state.jobs)
    periodic = {task.task.name for task in queue.periodic_registry.periodic_tasks.values()}
    assert "expire_selfies" in periodic


def test_a_step_finishing_after_the_deletion_leaves_nothing_behind(event: Event) -> None:
    """A step was already running when the photo was deleted: what it writes afterwards goes
    too, and it records nothing."""
    body = upload_photo(
        event.client, event.pat_token, (FACES / "obama_2.jpg").read_bytes(), project=event.project
    )
    photo_id = uuid.UUID(body["photoId"])
    store = event.app.state.store
    thumb = f"photos/{event.project}/{photo_id}/thumb-400.jpg"

    def work_racing_the_deletion(env, photo, original) -> dict[str, object]:
        deleted = event.client.delete(f"/v1/photos/{photo_id}", headers=event.pat)
        assert deleted.status_code == 204
        store.put(thumb, io.BytesIO(b"\xff\xd8\xff"), content_type="image/jpeg")
        return {"derivatives": ["thumb-400"]}

    outcome = run_step(
        event.app.state.jobs,
        upload_id=photo_id,
        step=StepName.THUMBNAIL,
        work=work_racing_the_deletion,
        attempt=1,
        max_attempts=1,
        job_id=None,
    )

    assert outcome == "skipped"
    left = inventory(event.app, project=event.project, photos=[str(photo_id)])
    assert left.objects == [] and left.vectors == 0 and left.jobs == 0
    assert {table: left.rows[table] for table in PHOTO_TABLES} == dict.fromkeys(PHOTO_TABLES, 0)

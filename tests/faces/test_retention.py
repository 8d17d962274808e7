"""Bystanders' face vectors end with their project (docs/faces.md, "Bystanders"): erased
`PHOTO_FACE_RETENTION_DAYS` after the project's end, boxes and matches kept, nobody new found,
a photo processed afterwards stores boxes only. Real dlib, real PostgreSQL + pgvector; the
Rekognition case with botocore's Stubber."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.stub import Stubber
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import text

from mediaplane.faces.rekognition import RekognitionIndex
from mediaplane.jobs.tasks import run_photo_face_retention
from mediaplane.projects import service as projects
from mediaplane.runtime import Runtime
from mediaplane.settings import Settings
from tests.faces.test_rekognition import rekognition_client
from tests.jobs.helpers import drain, upload_photo
from tests.media_api.helpers import bearer, put_to_presigned
from tests.projects.test_erasure import FACES
from tests.projects.test_rekognition_erasure import PREFIX, indexed_photo


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    return {"face_engine": "local"}


class Events:
    """Pat photographs projects; Obama and Biden appear in obama_and_biden.jpg."""

    def __init__(self, client: TestClient, make_token, app: FastAPI) -> None:
        self.client, self.app = client, app
        self.pat_token = make_token(aud="media", roles=["photographer"], sub="pat")
        self.pat = bearer(self.pat_token)
        self.tokens = {
            user: bearer(make_token(aud="media", roles=["user"], sub=user))
            for user in ("obama", "biden")
        }

    def photo(self, project: uuid.UUID, name: str = "obama_and_biden.jpg") -> str:
        body = upload_photo(self.client, self.pat_token, (FACES / name).read_bytes(), project)
        return str(body["photoId"])

    def enroll(self, user: str, name: str) -> None:
        headers = self.tokens[user]
        resp = self.client.put("/v1/me/consents/biometric_processing", headers=headers)
        assert resp.status_code in (200, 201), resp.text
        selfie = self.client.post("/v1/selfie/upload-url", headers=headers).json()
        data = (FACES / name).read_bytes()
        assert put_to_presigned(self.client, selfie["uploadUrl"], data).status_code == 200
        done = self.client.post(f"/v1/selfie/{selfie['selfieId']}/complete", headers=headers)
        assert done.status_code == 200, done.text
        drain(self.app)

    def matched(self, user: str) -> set[str]:
        resp = self.client.get("/v1/me/photos", headers=self.tokens[user])
        assert resp.status_code == 200, resp.text
        return {item["photoId"] for item in resp.json()["items"]}

    def boxes(self, photo: str) -> list[dict[str, int]]:
        resp = self.client.get(f"/v1/photos/{photo}", headers=self.pat)
        assert resp.status_code == 200, resp.text
        return [face["box"] for face in resp.json()["faces"]]

    def sql(self, query: str, **params: object) -> Any:
        with self.app.state.db.transaction() as session:
            result = session.execute(text(query), params)
            return result.scalar() if result.returns_rows else None

    def vectors(self, project: uuid.UUID) -> int:
        return int(
            self.sql(
                "SELECT count(*) FROM photo_faces WHERE project_id = :p AND embedding IS NOT NULL",
                p=project,
            )
        )

    def faces(self, project: uuid.UUID) -> int:
        return int(self.sql("SELECT count(*) FROM photo_faces WHERE project_id = :p", p=project))

    def end(self, project: uuid.UUID, days_ago: float) -> None:
        self.sql(
            "UPDATE projects SET ends_at = now() - make_interval(secs => :s) WHERE id = :p",
            s=days_ago * 86400,
            p=project,
        )

    def age_photos(self, project: uuid.UUID, days: float) -> None:
        self.sql(
            "UPDATE uploads SET created_at = now() - make_interval(secs => :s)"
            " WHERE project_id = :p",
            s=days * 86400,
            p=project,
        )


@pytest.fixture
def events(client: TestClient, make_token, app: FastAPI) -> Events:
    return Events(client, make_token, app)


def test_vectors_go_90_days_after_the_end_boxes_and_matches_stay(
    events: Events, settings: Settings
) -> None:
    assert settings.photo_face_retention_days == 90
    ended, running = uuid.uuid4(), uuid.uuid4()
    events.enroll("obama", "obama_1.jpg")
    old_photo, new_photo = events.photo(ended), events.photo(running)
    drain(events.app)
    assert events.matched("obama") == {old_photo, new_photo}
    found = events.vectors(ended)
    assert found >= 2 and events.vectors(running) == found
    boxes = events.boxes(old_photo)
    assert len(boxes) == found

    # 89 days after its end the project keeps its vectors.
    events.end(ended, days_ago=89)
    assert run_photo_face_retention(events.app.state.jobs) == {}
    assert events.vectors(ended) == found

    events.end(ended, days_ago=91)
    erased = run_photo_face_retention(events.app.state.jobs)

    assert erased == {ended: found}
    assert events.vectors(ended) == 0 and events.faces(ended) == found
    assert events.vectors(running) == found  # the running project is untouched
    # Photographers still see where the faces are; Obama keeps the photo he was found in.
    assert events.boxes(old_photo) == boxes
    assert events.matched("obama") == {old_photo, new_photo}
    # Biden enrolls now: he is found in the running project only.
    events.enroll("biden", "biden_1.jpg")
    assert events.matched("biden") == {new_photo}
    # Nothing left to do on a second run.
    assert run_photo_face_retention(events.app.state.jobs) == {}


def test_a_project_without_an_end_ends_with_its_latest_photo(events: Events) -> None:
    quiet, busy = uuid.uuid4(), uuid.uuid4()
    events.photo(quiet, "obama_2.jpg")
    events.photo(busy, "obama_2.jpg")
    drain(events.app)
    events.age_photos(quiet, days=91)
    events.age_photos(busy, days=91)
    events.photo(busy, "biden_2.jpg")  # a photo today: the project is still going
    drain(events.app)

    erased = run_photo_face_retention(events.app.state.jobs)

    assert erased == {quiet: 1}
    assert events.vectors(quiet) == 0
    assert events.vectors(busy) == 2


def test_a_photo_processed_after_retention_stores_boxes_only(events: Events) -> None:
    ended = uuid.uuid4()
    events.photo(ended, "obama_2.jpg")
    drain(events.app)
    with events.app.state.db.transaction() as session:
        projects.update(
            session,
            project=projects.get(session, project_id=ended),
            ends_at=datetime.now(UTC) - timedelta(days=100),
            fields={"ends_at"},
        )
    assert events.vectors(ended) == 1  # the hourly job has not run yet

    late = events.photo(ended)
    drain(events.app)

    # The late photo's faces are boxes without vectors, and the project's others went too.
    late_faces = len(events.boxes(late))
    assert late_faces >= 2
    assert events.vectors(ended) == 0 and events.faces(ended) == 1 + late_faces
    events.enroll("obama", "obama_1.jpg")
    assert events.matched("obama") == set()


@pytest.mark.parametrize("days", [1, 30])
def test_the_retention_is_a_setting(
    events: Events, settings: Settings, days: int, app: FastAPI
) -> None:
    app.state.jobs.settings = settings.model_copy(update={"photo_face_retention_days": days})
    project = uuid.uuid4()
    events.photo(project, "obama_2.jpg")
    drain(events.app)
    events.end(project, days_ago=days + 0.01)

    assert run_photo_face_retention(app.state.jobs) == {project: 1}


def test_the_setting_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PHOTO_FACE_RETENTION_DAYS", "14")
    assert Settings().photo_face_retention_days == 14
    # 0 would leave a project without an end (its end is its latest photo) no vectors at all.
    monkeypatch.setenv("PHOTO_FACE_RETENTION_DAYS", "0")
    with pytest.raises(ValueError, match="photo_face_retention_days"):
        Settings()


@pytest.fixture
def rekognition() -> Iterator[tuple[RekognitionIndex, Stubber]]:
    client = rekognition_client()
    with Stubber(client) as stub:
        yield RekognitionIndex(client, prefix=PREFIX), stub
        stub.assert_no_pending_responses()


def test_rekognition_retention_deletes_the_projects_collection(
    runtime: Runtime, rekognition: tuple[RekognitionIndex, Stubber]
) -> None:
    from mediaplane.faces.retention import expire_photo_faces

    index, stubber = rekognition
    project = uuid.uuid4()
    with runtime.database.transaction() as session:
        projects.create(
            session,
            name="Gala",
            owner_id="olga",
            now=datetime.now(UTC),
            ends_at=datetime.now(UTC) - timedelta(days=91),
            project_id=project,
        )
        indexed_photo(session, runtime.store, project_id=project, face_ids=["f-1", "f-2"])
    stubber.add_response(
        "delete_collection",
        {"StatusCode": 200},
        {"CollectionId": f"{PREFIX}-project-{project}"},
    )
    cutoff = datetime.now(UTC) - timedelta(days=90)

    with runtime.database.transaction() as session:
        erased = expire_photo_faces(session, index, cutoff=cutoff)

    assert erased == {project: 2}
    with runtime.database.transaction() as session:
        left = session.execute(
            text("SELECT count(*), count(external_face_id) FROM photo_faces WHERE project_id = :p"),
            {"p": project},
        ).one()
        assert tuple(left) == (2, 0)
        # No second DeleteCollection: the project has no face in Rekognition any more.
        assert expire_photo_faces(session, index, cutoff=cutoff) == {}

"""Attendees find themselves without typing ids, and a "not me" answer holds for good."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from mediaplane.jobs import operations
from mediaplane.jobs.models import StepName
from tests.jobs.helpers import drain, upload_photo
from tests.media_api.helpers import bearer, get_presigned, put_to_presigned

FACES = Path(__file__).parents[1] / "fixtures" / "faces"


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    return {"face_engine": "local"}


@pytest.fixture
def scene(client: TestClient, make_token, app: FastAPI) -> dict:
    """Obama's selfie; Pat's photos in two events: a gala (obama_2, then obama_and_biden) and a
    wedding (biden_2, then obama_2 again)."""
    pat = make_token(aud="media", roles=["photographer"], sub="pat")
    obama = bearer(make_token(aud="media", roles=["user"], sub="obama"))
    olga = bearer(make_token(aud="backoffice", roles=["operator"], sub="olga"))
    assert client.put("/v1/me/consents/biometric_processing", headers=obama).status_code == 201
    selfie = client.post("/v1/selfie/upload-url", headers=obama).json()
    data = (FACES / "obama_1.jpg").read_bytes()
    assert put_to_presigned(client, selfie["uploadUrl"], data).status_code == 200
    photos: dict[str, str] = {}
    projects = {}
    for event, names in (
        ("Gala", ("obama_2.jpg", "obama_and_biden.jpg")),
        ("Wedding", ("biden_2.jpg", "obama_2.jpg")),
    ):
        created = client.post("/v1/projects", json={"name": event}, headers=olga).json()
        project = uuid.UUID(created["projectId"])
        client.put(f"/v1/projects/{project}/photographers/pat", headers=olga)
        projects[event] = str(project)
        for name in names:
            body = upload_photo(client, pat, (FACES / name).read_bytes(), project=project)
            photos[f"{event}/{name}"] = body["photoId"]
    drain(app)
    return {"obama": obama, "photos": photos, "projects": projects}


def test_an_attendee_sees_their_events_and_photos_without_ids(
    client: TestClient, scene: dict
) -> None:
    obama, photos, projects = scene["obama"], scene["photos"], scene["projects"]

    events = client.get("/v1/projects", headers=obama).json()["items"]

    # Newest match first: the wedding; each with a count and a preview of the newest photo.
    assert [(e["name"], e["matchCount"]) for e in events] == [("Wedding", 1), ("Gala", 2)]
    assert [e["projectId"] for e in events] == [projects["Wedding"], projects["Gala"]]
    for event in events:
        assert get_presigned(client, event["cover"]["url"]).status_code == 200

    everywhere = client.get("/v1/me/photos", headers=obama).json()
    newest_first = [
        photos["Wedding/obama_2.jpg"],
        photos["Gala/obama_and_biden.jpg"],
        photos["Gala/obama_2.jpg"],
    ]
    assert [i["photoId"] for i in everywhere["items"]] == newest_first
    assert everywhere["nextCursor"] is None
    # Paged.
    page = client.get("/v1/me/photos", params={"limit": 2}, headers=obama).json()
    rest = client.get(
        "/v1/me/photos", params={"limit": 2, "cursor": page["nextCursor"]}, headers=obama
    ).json()
    assert [i["photoId"] for i in page["items"] + rest["items"]] == newest_first
    # Filtered by project, as before.
    gala = client.get("/v1/me/photos", params={"projectId": projects["Gala"]}, headers=obama)
    assert {i["projectId"] for i in gala.json()["items"]} == {projects["Gala"]}


def test_not_me_hides_a_match_for_good(client: TestClient, app: FastAPI, scene: dict) -> None:
    obama, photos = scene["obama"], scene["photos"]
    wrong = photos["Gala/obama_and_biden.jpg"]

    resp = client.delete(f"/v1/me/photos/{wrong}", headers=obama)

    assert resp.status_code == 204

    def mine() -> set[str]:
        return {i["photoId"] for i in client.get("/v1/me/photos", headers=obama).json()["items"]}

    assert wrong not in mine()
    # Reprocessing the photo finds the face again, and records no match of it.
    with app.state.db.transaction() as session:
        uploads = operations.select_for_reprocess(
            session, project_id=None, photo_id=uuid.UUID(wrong)
        )
        assert operations.reprocess(session, uploads=uploads, steps=[StepName.FACES]) == 1
    drain(app)
    assert wrong not in mine()
    # Nor does a new selfie (which matches against every photo again).
    selfie = client.post("/v1/selfie/upload-url", headers=obama).json()
    data = (FACES / "obama_1.jpg").read_bytes()
    assert put_to_presigned(client, selfie["uploadUrl"], data).status_code == 200
    drain(app)
    assert mine() == {photos["Gala/obama_2.jpg"], photos["Wedding/obama_2.jpg"]}
    # Not matched there (any more): 404, for a photo of no match or no photo at all.
    again = client.delete(f"/v1/me/photos/{wrong}", headers=obama)
    assert again.status_code == 404 and again.json()["code"] == "photo_not_found"

"""Projects as a resource: created, read, changed, staffed; PROJECTS_MODE decides who may
create them and what an upload to an unknown project does."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient
from httpx import Response

from tests.media_api.helpers import bearer


def ok(resp: Response, status: int = 200) -> Any:
    assert resp.status_code == status, resp.text
    return resp.json()


def problem(resp: Response, status: int, code: str) -> None:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"] == "application/problem+json"
    assert resp.json()["code"] == code


@pytest.fixture
def olga(make_token) -> dict[str, str]:
    return bearer(make_token(aud="backoffice", roles=["operator"], sub="olga"))


@pytest.fixture
def pat(make_token) -> dict[str, str]:
    return bearer(make_token(aud="media", roles=["photographer"], sub="pat"))


@pytest.fixture
def paula(make_token) -> dict[str, str]:
    return bearer(make_token(aud="media", roles=["photographer"], sub="paula"))


def upload_url(client: TestClient, headers: dict[str, str], project: str) -> Response:
    return client.post("/v1/photos/upload-url", json={"projectId": project}, headers=headers)


def test_an_operator_creates_a_project_and_assigns_photographers(
    client: TestClient, olga, pat, paula
) -> None:
    body = {"name": "Summer gala", "startsAt": "2026-06-01T18:00:00Z"}
    created = ok(client.post("/v1/projects", json=body, headers=olga), 201)

    assert created["name"] == "Summer gala"
    assert created["startsAt"].startswith("2026-06-01T18:00:00")
    assert created["endsAt"] is None
    assert created["photographers"] == []
    assert created["ownerId"] == "olga"
    project = created["projectId"]
    uuid.UUID(project)
    # Not a member yet: 403 for the one who must be added first.
    problem(upload_url(client, pat, project), 403, "not_a_project_member")

    staffed = ok(client.put(f"/v1/projects/{project}/photographers/pat", headers=olga))
    assert staffed["photographers"] == ["pat"]
    ok(client.put(f"/v1/projects/{project}/photographers/pat", headers=olga))  # idempotent

    ok(upload_url(client, pat, project), 201)
    problem(upload_url(client, paula, project), 403, "not_a_project_member")
    # Photographers pick their projects by name.
    assert [
        (p["projectId"], p["name"]) for p in ok(client.get("/v1/projects", headers=pat))["items"]
    ] == [(project, "Summer gala")]
    assert ok(client.get("/v1/projects", headers=paula))["items"] == []
    assert [p["projectId"] for p in ok(client.get("/v1/projects", headers=olga))["items"]] == [
        project
    ]

    ok(client.delete(f"/v1/projects/{project}/photographers/pat", headers=olga))
    problem(upload_url(client, pat, project), 403, "not_a_project_member")


def test_patch_changes_only_what_is_sent(client: TestClient, olga) -> None:
    body = {"name": "Gala", "startsAt": "2026-06-01T18:00:00Z", "endsAt": "2026-06-02T02:00:00Z"}
    project = ok(client.post("/v1/projects", json=body, headers=olga), 201)["projectId"]
    path = f"/v1/projects/{project}"

    renamed = ok(client.patch(path, json={"name": "Summer gala"}, headers=olga))
    assert (renamed["name"], renamed["endsAt"][:10]) == ("Summer gala", "2026-06-02")
    cleared = ok(client.patch(path, json={"endsAt": None}, headers=olga))
    assert (cleared["name"], cleared["endsAt"]) == ("Summer gala", None)

    problem(
        client.patch(path, json={"endsAt": "2026-05-01T00:00:00Z"}, headers=olga),
        400,
        "invalid_dates",
    )
    problem(client.patch(path, json={"name": ""}, headers=olga), 422, "validation_failed")
    problem(client.patch(path, json={"owner": "x"}, headers=olga), 422, "validation_failed")
    problem(client.get(f"/v1/projects/{uuid.uuid4()}", headers=olga), 404, "project_not_found")


def test_open_mode_the_first_uploader_creates_and_owns_the_project(
    client: TestClient, olga, pat, paula
) -> None:
    project = str(uuid.uuid4())

    ok(upload_url(client, pat, project), 201)

    shown = ok(client.get(f"/v1/projects/{project}", headers=pat))
    assert (shown["ownerId"], shown["photographers"]) == ("pat", ["pat"])
    assert shown["name"] == f"Project {project[:8]}"
    problem(upload_url(client, paula, project), 403, "not_a_project_member")
    # The owner staffs it without an operator.
    ok(client.put(f"/v1/projects/{project}/photographers/paula", headers=pat))
    ok(upload_url(client, paula, project), 201)
    # A photographer may create one in the app, too.
    mine = ok(client.post("/v1/projects", json={"name": "Wedding"}, headers=paula), 201)
    assert mine["photographers"] == ["paula"]


@pytest.mark.parametrize("settings_overrides", [{"projects_mode": "managed"}])
def test_managed_mode_only_operators_create_projects(client: TestClient, olga, pat) -> None:
    unknown = str(uuid.uuid4())
    problem(upload_url(client, pat, unknown), 404, "project_not_found")
    batch = {"projectId": unknown, "count": 2}
    problem(
        client.post("/v1/photos/upload-urls", json=batch, headers=pat), 404, "project_not_found"
    )
    problem(
        client.post("/v1/projects", json={"name": "Mine"}, headers=pat), 403, "projects_managed"
    )

    project = ok(client.post("/v1/projects", json={"name": "Gala"}, headers=olga), 201)
    ok(client.put(f"/v1/projects/{project['projectId']}/photographers/pat", headers=olga))
    ok(upload_url(client, pat, project["projectId"]), 201)


def test_deleting_a_project_twice_is_the_same_deletion(client: TestClient, olga) -> None:
    project = ok(client.post("/v1/projects", json={"name": "Gala"}, headers=olga), 201)
    path = f"/v1/projects/{project['projectId']}"

    first = ok(client.delete(path, headers=olga), 202)
    again = ok(client.delete(path, headers=olga), 202)

    assert first == again
    problem(client.delete(f"/v1/projects/{uuid.uuid4()}", headers=olga), 404, "project_not_found")
    problem(
        client.get(f"/v1/projects/{uuid.uuid4()}/deletion", headers=olga),
        404,
        "deletion_not_found",
    )

"""`POST /v1/photos/upload-urls`: up to 100 photo upload URLs in one request and one transaction,
each exactly what the single endpoint answers, each usable on its own."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event, func, select

from mediaplane.runtime import Runtime
from mediaplane.uploads import PendingUpload, UploadStatus
from tests.media_api.helpers import bearer, put_to_presigned

PHOTO = (Path(__file__).parents[1] / "fixtures" / "faces" / "obama_2.jpg").read_bytes()


def photographer(make_token) -> dict[str, str]:
    return bearer(make_token(aud="media", roles=["photographer"], sub="pat"))


def uploads_in(runtime: Runtime, project: uuid.UUID) -> dict[str, str]:
    with runtime.database.transaction() as session:
        rows = session.execute(
            select(PendingUpload.id, PendingUpload.status).where(
                PendingUpload.project_id == project
            )
        ).all()
    return {str(row.id): row.status for row in rows}


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_a_batch_is_count_single_answers_each_usable(
    client: TestClient, make_token, runtime: Runtime, backend: str
) -> None:
    project = uuid.uuid4()
    headers = photographer(make_token)
    single = client.post("/v1/photos/upload-url", json={"projectId": str(project)}, headers=headers)

    resp = client.post(
        "/v1/photos/upload-urls", json={"projectId": str(project), "count": 5}, headers=headers
    )

    assert resp.status_code == 201, resp.text
    items = resp.json()["items"]
    assert len(items) == 5
    assert len({item["photoId"] for item in items}) == 5
    for item in items:
        assert set(item) == set(single.json())  # the single endpoint's body, field for field
        assert item["key"] == f"photos/{project}/{item['photoId']}/original.jpg"
        assert item["expiresInSeconds"] == single.json()["expiresInSeconds"]
    # Every URL works on its own, and each upload is noticed as itself.
    for item in items[:2]:
        put = put_to_presigned(client, item["uploadUrl"], PHOTO)
        assert put.status_code in (200, 204), put.text
        done = client.post(f"/v1/photos/{item['photoId']}/complete", headers=headers)
        assert done.status_code == 200, done.text
        assert done.json()["status"] == UploadStatus.UPLOADED
    states = uploads_in(runtime, project)
    assert [states[item["photoId"]] for item in items] == [UploadStatus.UPLOADED] * 2 + [
        UploadStatus.PENDING
    ] * 3


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"count": 0}, "count"),
        ({"count": 101}, "count"),
        ({"count": "many"}, "count"),
        ({}, "count"),
        ({"count": 2, "extra": 1}, "extra"),
    ],
)
def test_a_bad_count_is_422_and_issues_nothing(
    client: TestClient, make_token, runtime: Runtime, body: dict[str, object], field: str
) -> None:
    project = uuid.uuid4()

    resp = client.post(
        "/v1/photos/upload-urls",
        json={"projectId": str(project), **body},
        headers=photographer(make_token),
    )

    assert resp.status_code == 422, resp.text
    assert resp.json()["code"] == "validation_failed"
    assert any(err["loc"][-1] == field for err in resp.json()["errors"])
    assert uploads_in(runtime, project) == {}


def test_a_batch_of_100_is_one_insert(client: TestClient, make_token, runtime: Runtime) -> None:
    project = uuid.uuid4()
    statements: list[str] = []

    def record(conn: object, cursor: object, statement: str, *args: object) -> None:
        statements.append(statement)

    engine = runtime.database.engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        resp = client.post(
            "/v1/photos/upload-urls",
            json={"projectId": str(project), "count": 100},
            headers=photographer(make_token),
        )
    finally:
        event.remove(engine, "before_cursor_execute", record)

    assert resp.status_code == 201, resp.text
    assert len(resp.json()["items"]) == 100
    assert sum(s.lstrip().upper().startswith("INSERT INTO UPLOADS") for s in statements) == 1
    with runtime.database.transaction() as session:
        count = session.scalar(
            select(func.count())
            .select_from(PendingUpload)
            .where(PendingUpload.project_id == project)
        )
    assert count == 100

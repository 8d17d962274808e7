"""`POST /v1/photos/upload-url` has a fast path (`routes.fast_photo_upload_url`): one conditional
INSERT on the event loop for a member uploading into a live project, the declared route for
everything else. Whichever answers, the client sees the same thing."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, text

from mediaplane.media_api import service
from mediaplane.projects.models import ProjectDeletion
from mediaplane.runtime import Runtime
from mediaplane.uploads import PendingUpload
from tests.media_api.helpers import bearer

ROUTE = "/v1/photos/upload-url"


def rows_of(runtime: Runtime, project: uuid.UUID) -> list[tuple[str, str, str]]:
    with runtime.database.transaction() as session:
        found = session.execute(
            select(PendingUpload.id, PendingUpload.key, PendingUpload.owner_id).where(
                PendingUpload.project_id == project
            )
        ).all()
    return [(str(row.id), row.key, row.owner_id) for row in found]


def test_the_fast_and_the_declared_route_answer_alike_one_row_per_url(
    client: TestClient, make_token, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    inserted: list[bool] = []
    conditional_insert = service.create_member_photo_upload

    async def counted(*args: Any, **kwargs: Any) -> service.IssuedURL | None:
        issued = await conditional_insert(*args, **kwargs)
        inserted.append(issued is not None)
        return issued

    monkeypatch.setattr(service, "create_member_photo_upload", counted)
    project = uuid.uuid4()
    pat = bearer(make_token(aud="media", roles=["photographer"], sub="pat"))
    body = f'{{"projectId": "{project}", "contentType": "image/png"}}'.encode()
    # The first upload creates the project (open mode): the full path, in the thread pool.
    first = client.post(ROUTE, content=body, headers={**pat, "Content-Type": "application/json"})
    # A member now: the fast path.
    fast = client.post(ROUTE, content=body, headers={**pat, "Content-Type": "application/json"})
    # A content type the fast path leaves alone: the declared route.
    declared = client.post(
        ROUTE, content=body, headers={**pat, "Content-Type": "application/json; charset=utf-8"}
    )

    # Tried for both requests the fast path took; it wrote the second one's row.
    assert inserted == [False, True]
    answers = [first, fast, declared]
    assert [r.status_code for r in answers] == [201, 201, 201]
    assert {r.headers["content-type"] for r in answers} == {"application/json"}
    assert [list(r.json()) for r in answers] == [list(declared.json())] * 3
    assert fast.json()["headers"] == {"Content-Type": "image/png"}
    assert fast.json()["expiresInSeconds"] == declared.json()["expiresInSeconds"]
    # Exactly one row per URL handed out, with the id and key the client was given.
    issued = sorted((r.json()["photoId"], r.json()["key"], "pat") for r in answers)
    assert sorted(rows_of(runtime, project)) == issued


def test_errors_keep_the_declared_routes_order_and_shape(
    client: TestClient, make_token, runtime: Runtime
) -> None:
    project = uuid.uuid4()
    json_type = {"Content-Type": "application/json"}
    user = bearer(make_token(aud="media", roles=["user"]))

    # The body is parsed before the token is checked.
    malformed = client.post(ROUTE, content=b"{", headers={**json_type, **bearer("nope")})
    assert malformed.status_code == 422 and malformed.json()["code"] == "validation_failed"
    body = {"projectId": str(project)}
    assert client.post(ROUTE, json=body).json()["code"] == "missing_token"
    bad = client.post(ROUTE, json=body, headers=bearer("nope"))
    assert bad.status_code == 401 and bad.json()["code"] == "invalid_token"
    wrong_role = client.post(ROUTE, json=body, headers=user)
    assert wrong_role.status_code == 403 and wrong_role.json()["code"] == "insufficient_role"
    assert rows_of(runtime, project) == []


def test_refusals_on_the_fast_path_write_nothing(
    client: TestClient, make_token, runtime: Runtime
) -> None:
    project = uuid.uuid4()
    pat = bearer(make_token(aud="media", roles=["photographer"], sub="pat"))
    paula = bearer(make_token(aud="media", roles=["photographer"], sub="paula"))
    assert client.post(ROUTE, json={"projectId": str(project)}, headers=pat).status_code == 201

    stranger = client.post(ROUTE, json={"projectId": str(project)}, headers=paula)
    assert stranger.status_code == 403 and stranger.json()["code"] == "not_a_project_member"

    with runtime.database.transaction() as session:
        session.add(
            ProjectDeletion(project_id=project, requested_by="olga", requested_at=datetime.now(UTC))
        )
    deleted = client.post(ROUTE, json={"projectId": str(project)}, headers=pat)
    assert deleted.status_code == 409 and deleted.json()["code"] == "project_deleted"

    with runtime.database.transaction() as session:
        count = session.scalar(
            select(func.count())
            .select_from(PendingUpload)
            .where(PendingUpload.project_id == project)
        )
    assert count == 1


def test_a_dropped_pooled_connection_costs_no_error(
    client: TestClient, make_token, runtime: Runtime
) -> None:
    """The fast path's pool does not ping: a connection the server ended (a restart, a
    failover) fails its statement, and the request is answered by the full path instead."""
    project = uuid.uuid4()
    pat = bearer(make_token(aud="media", roles=["photographer"], sub="pat"))
    for _ in range(2):  # the second one leaves a connection in the fast path's pool
        assert client.post(ROUTE, json={"projectId": str(project)}, headers=pat).status_code == 201
    with runtime.database.engine.connect() as conn:
        ended = conn.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND query LIKE 'INSERT INTO uploads%'"
            )
        ).all()
    assert ended

    answers = [client.post(ROUTE, json={"projectId": str(project)}, headers=pat) for _ in range(2)]

    assert [r.status_code for r in answers] == [201, 201], answers[0].text
    assert len(rows_of(runtime, project)) == 4

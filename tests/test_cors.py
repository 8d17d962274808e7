"""CORS as a browser on another origin exercises it: preflights per route family, labelled
responses, refused origins, and public image GETs readable from anywhere."""

from __future__ import annotations

import uuid

import pytest
from fastapi.testclient import TestClient

from tests.media_api.helpers import bearer

APP_ORIGIN = "https://backoffice.example.com"
OTHER_ORIGIN = "https://evil.example.net"


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    return {"cors_allowed_origins": f"{APP_ORIGIN},http://localhost:5173"}


def preflight(
    client: TestClient, path: str, method: str, headers: str, origin: str = APP_ORIGIN
) -> tuple[int, dict[str, str]]:
    resp = client.options(
        path,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": headers,
        },
    )
    return resp.status_code, dict(resp.headers)


@pytest.mark.parametrize(
    ("path", "method", "headers"),
    [
        ("/v1/photos/upload-url", "POST", "authorization,content-type"),
        ("/v1/me/selfie", "DELETE", "authorization"),
        ("/api/images/upload", "POST", "authorization"),
        ("/_api/admin/images/upload", "GET", "authorization"),
        ("/_images/app/abc", "POST", "content-type"),
        ("/_storage/photos/p/x/original.jpg", "PUT", "content-type"),
    ],
)
def test_listed_origin_preflights_each_route_family(
    client: TestClient, path: str, method: str, headers: str
) -> None:
    status, answer = preflight(client, path, method, headers)

    assert status == 204
    assert answer["access-control-allow-origin"] == APP_ORIGIN
    assert method in answer["access-control-allow-methods"]
    assert "access-control-allow-credentials" not in answer
    assert "Origin" in answer["vary"]


def test_unlisted_origin_method_or_header_is_refused(client: TestClient) -> None:
    origin, _ = preflight(client, "/v1/photos/upload-url", "POST", "content-type", OTHER_ORIGIN)
    method, _ = preflight(client, "/_storage/a/b.jpg", "DELETE", "content-type")
    header, _ = preflight(client, "/_storage/a/b.jpg", "PUT", "x-amz-acl")
    direct = client.get("/v1/me/selfie", headers={"Origin": OTHER_ORIGIN})

    assert (origin, method, header) == (403, 403, 403)
    assert "access-control-allow-origin" not in direct.headers


def test_listed_origin_responses_are_labelled(client: TestClient, make_token) -> None:
    headers = bearer(make_token(aud="media", roles=["photographer"]))
    resp = client.post(
        "/v1/photos/upload-url",
        json={"projectId": str(uuid.uuid4())},
        headers={**headers, "Origin": APP_ORIGIN},
    )

    assert resp.status_code == 201
    assert resp.headers["access-control-allow-origin"] == APP_ORIGIN
    assert "X-Request-Id" in resp.headers["access-control-expose-headers"]


@pytest.mark.parametrize("settings_overrides", [{}])
def test_without_origins_nothing_is_cross_origin(client: TestClient) -> None:
    status, answer = preflight(client, "/v1/photos/upload-url", "POST", "content-type")

    assert status == 405
    assert "access-control-allow-origin" not in answer


@pytest.mark.parametrize("settings_overrides", [{}])
def test_public_image_gets_are_readable_from_any_origin(client: TestClient) -> None:
    resp = client.get("/_images/app/nothing/profile", headers={"Origin": OTHER_ORIGIN})

    assert resp.status_code == 404  # even the error is readable by the page
    assert resp.headers["access-control-allow-origin"] == "*"


def test_a_malformed_origin_setting_fails_naming_it() -> None:
    from pydantic import ValidationError

    from mediaplane.settings import Settings

    with pytest.raises(ValidationError, match="not an origin"):
        Settings(_env_file=None, cors_allowed_origins="https://app.example.com/")  # type: ignore[call-arg]

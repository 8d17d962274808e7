"""The signed-URL issuing endpoints: end users (rate-limited) and the Admin API."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi.testclient import TestClient

from mediaplane.images_api import parse_images_url
from tests.media_api.helpers import bearer

FIXTURES = Path(__file__).parents[1] / "fixtures"


def metadata_of(url: str) -> dict:
    value = parse_qs(urlsplit(url).query)["x-authgear-metadata"][0]
    return json.loads(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)))


def test_user_gets_a_signed_url_that_uploads(client: TestClient, make_token) -> None:
    token = make_token(aud="media", roles=["user"], sub="user-42")
    resp = client.post("/api/images/upload", headers=bearer(token))
    assert resp.status_code == 200, resp.text
    url = resp.json()["result"]["upload_url"]
    parts = urlsplit(url)
    assert parts.netloc == "testserver" and parts.path.startswith("/_images/app/")
    assert metadata_of(url) == {"uploaded_by": "user", "user_id": "user-42"}
    assert parse_qs(parts.query)["x-authgear-expires"] == ["900"]

    data = (FIXTURES / "faces" / "obama_1.jpg").read_bytes()
    uploaded = client.post(url, files={"file": ("me.jpg", data, "image/jpeg")})
    assert uploaded.status_code == 200, uploaded.text
    ref = parse_images_url(uploaded.json()["result"]["upload_url"])
    assert ref.app_id == "app"
    assert client.get(f"/_images/app/{ref.object_id}/profile").status_code == 200


def test_issuing_needs_a_media_token(client: TestClient, make_token) -> None:
    resp = client.post("/api/images/upload")
    assert resp.status_code == 401
    assert resp.headers["www-authenticate"].startswith("Bearer")
    assert resp.json()["error"]["name"] == "Unauthorized"
    wrong_aud = make_token(aud="backoffice", roles=["operator"])
    assert client.post("/api/images/upload", headers=bearer(wrong_aud)).status_code == 403


@pytest.mark.parametrize("settings_overrides", [{"images_upload_rate_limit": 3}])
def test_rate_limit_is_per_user(client: TestClient, make_token) -> None:
    alice = bearer(make_token(aud="media", roles=["user"], sub="alice"))
    bob = bearer(make_token(aud="media", roles=["user"], sub="bob"))
    assert [client.post("/api/images/upload", headers=alice).status_code for _ in range(3)] == [
        200,
        200,
        200,
    ]
    over = client.post("/api/images/upload", headers=alice)
    assert over.status_code == 429
    assert over.json()["error"]["name"] == "TooManyRequest"
    assert 1 <= int(over.headers["retry-after"]) <= 60
    assert client.post("/api/images/upload", headers=bob).status_code == 200


def test_rate_limit_holds_across_processes(settings, runtime, make_token) -> None:
    # Two app instances (as two server processes would be) share the count in PostgreSQL.
    from mediaplane.app import create_app

    settings = settings.model_copy(update={"images_upload_rate_limit": 2})
    apps = [create_app(settings, database=runtime.database, store=runtime.store) for _ in (1, 2)]
    headers = bearer(make_token(aud="media", roles=["user"], sub="carol"))
    codes = [
        TestClient(a).post("/api/images/upload", headers=headers).status_code
        for a in (apps[0], apps[1], apps[0])
    ]
    assert codes == [200, 200, 429]


def test_admin_api_issues_for_a_user(client: TestClient, make_token) -> None:
    operator = bearer(make_token(aud="backoffice", roles=["operator"]))
    resp = client.post("/_api/admin/images/upload", json={"user_id": "u-7"}, headers=operator)
    assert resp.status_code == 200, resp.text
    assert metadata_of(resp.json()["result"]["upload_url"]) == {
        "uploaded_by": "admin_api",
        "user_id": "u-7",
    }
    photographer = bearer(make_token(aud="backoffice", roles=["photographer"]))
    denied = client.post("/_api/admin/images/upload", json={"user_id": "u"}, headers=photographer)
    assert denied.status_code == 403
    bad = client.post("/_api/admin/images/upload", json={}, headers=operator)
    assert bad.status_code == 400 and bad.json()["error"]["reason"] == "ValidationFailed"


@pytest.mark.parametrize("settings_overrides", [{"app_hosts": {"app1.example.com": "app1"}}])
def test_app_id_comes_from_the_host(app, make_token) -> None:
    token = bearer(make_token(aud="media", roles=["user"]))
    on_app1 = TestClient(app, base_url="http://app1.example.com")
    url = on_app1.post("/api/images/upload", headers=token).json()["result"]["upload_url"]
    assert urlsplit(url).path.startswith("/_images/app1/")
    assert urlsplit(url).netloc == "app1.example.com"
    elsewhere = TestClient(app, base_url="http://testserver")
    url = elsewhere.post("/api/images/upload", headers=token).json()["result"]["upload_url"]
    assert urlsplit(url).path.startswith("/_images/app/")


def test_the_url_is_answered_under_both_keys(client: TestClient, make_token) -> None:
    # Upstream Authgear's handler answers `url`; the seed spec says `upload_url`.
    token = bearer(make_token(aud="media", roles=["user"], sub="user-1"))
    result = client.post("/api/images/upload", headers=token).json()["result"]
    assert result["url"] == result["upload_url"]

    data = (FIXTURES / "faces" / "obama_1.jpg").read_bytes()
    uploaded = client.post(result["url"], files={"file": ("me.jpg", data, "image/jpeg")})
    stored = uploaded.json()["result"]
    assert stored["url"] == stored["upload_url"]
    assert stored["url"].startswith("authgearimages:///app/")


def test_both_issuing_endpoints_take_get(client: TestClient, make_token) -> None:
    user = bearer(make_token(aud="media", roles=["user"], sub="user-9"))
    operator = bearer(make_token(aud="backoffice", roles=["operator"]))

    mine = client.get("/api/images/upload", headers=user)
    for_user = client.get("/_api/admin/images/upload?user_id=u-8", headers=operator)
    missing = client.get("/_api/admin/images/upload", headers=operator)

    assert mine.status_code == 200, mine.text
    assert metadata_of(mine.json()["result"]["url"]) == {"uploaded_by": "user", "user_id": "user-9"}
    assert for_user.status_code == 200, for_user.text
    assert metadata_of(for_user.json()["result"]["url"])["user_id"] == "u-8"
    assert missing.status_code == 400
    assert missing.json()["error"]["reason"] == "ValidationFailed"
    assert client.get("/api/images/upload").status_code == 401

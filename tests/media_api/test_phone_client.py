"""A phone app written against acme-media-api.md: it declares what it sends (`contentType`),
PUTs exactly the headers it is told to, and waits for each photo's overall `status`.

HEIC is what an iPhone camera writes; PNG and WebP come from screenshots and Android apps.
Runs on local disk and on a real S3 server (SeaweedFS), with the real local face engine.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import pyvips
from fastapi.testclient import TestClient

from tests.imaging import factories
from tests.jobs.helpers import drain
from tests.media_api.helpers import bearer, get_presigned, put_to_presigned

HEIC = Path(__file__).parents[1] / "fixtures" / "heic"
BOTH = pytest.mark.parametrize("backend", ["local", "s3"])


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    return {"face_engine": "local"}


def ask(client: TestClient, path: str, headers: dict[str, str], body: dict) -> dict:
    resp = client.post(path, json=body, headers=headers)
    assert resp.status_code in (200, 201), resp.text
    return resp.json()


def put_as_told(client: TestClient, issued: dict, data: bytes) -> None:
    """PUT with the headers the response said to send, nothing else."""
    [(name, value)] = issued["headers"].items()
    assert name == "Content-Type"
    resp = put_to_presigned(client, issued["uploadUrl"], data, content_type=value)
    assert resp.status_code == 200, resp.text


@BOTH
def test_heic_selfie_and_photos_go_through_the_whole_flow(
    client: TestClient, make_token, backend: str
) -> None:
    user = bearer(make_token(aud="media", roles=["user"], sub="biden"))
    pat = bearer(make_token(aud="media", roles=["photographer"], sub="pat"))
    project = uuid.uuid4()
    assert client.put("/v1/me/consents/biometric_processing", headers=user).status_code == 201

    selfie = ask(client, "/v1/selfie/upload-url", user, {"contentType": "image/heic"})
    assert selfie["headers"] == {"Content-Type": "image/heic"}
    assert selfie["key"].endswith(".jpg")  # the spec's key convention, whatever the type
    put_as_told(client, selfie, (HEIC / "selfie.heic").read_bytes())
    photo = ask(
        client,
        "/v1/photos/upload-url",
        pat,
        {"projectId": str(project), "contentType": "image/heic"},
    )
    assert photo["key"] == f"photos/{project}/{photo['photoId']}/original.jpg"
    put_as_told(client, photo, (HEIC / "photo-biden.heic").read_bytes())
    client.post(f"/v1/selfie/{selfie['selfieId']}/complete", headers=user)
    client.post(f"/v1/photos/{photo['photoId']}/complete", headers=pat)
    drain(client.app)  # type: ignore[arg-type]

    me = client.get("/v1/me/selfie", headers=user).json()
    assert me["face"]["status"] == "indexed", me
    original = get_presigned(client, me["download"]["url"])
    assert original.headers["content-type"] == "image/heic"

    view = client.get(f"/v1/photos/{photo['photoId']}", headers=pat).json()
    assert view["processing"] == {"status": "processed", "failedStep": None, "reason": None}
    assert set(view["steps"]) == {"thumbnail", "watermark", "faces"}
    assert (view["width"], view["height"]) == (800, 800)
    served = get_presigned(client, view["downloads"]["original"]["url"])
    assert served.headers["content-type"] == "image/heic"
    assert served.content == (HEIC / "photo-biden.heic").read_bytes()
    for name in ("thumb-400", "thumb-800", "watermarked"):
        rendered = get_presigned(client, view["downloads"][name]["url"])
        assert rendered.content[:3] == b"\xff\xd8\xff", name
    thumb = pyvips.Image.new_from_buffer(
        get_presigned(client, view["downloads"]["thumb-400"]["url"]).content, ""
    )
    assert thumb.width == 400

    mine = client.get("/v1/me/photos", params={"projectId": str(project)}, headers=user).json()
    assert [item["photoId"] for item in mine["items"]] == [photo["photoId"]]


@BOTH
@pytest.mark.parametrize(
    ("content_type", "data"),
    [("image/png", factories.png_bytes()), ("image/webp", factories.webp_bytes())],
)
def test_png_and_webp_photos_with_their_declared_type(
    client: TestClient, make_token, backend: str, content_type: str, data: bytes
) -> None:
    pat = bearer(make_token(aud="media", roles=["photographer"], sub="pat"))
    batch = ask(
        client,
        "/v1/photos/upload-urls",
        pat,
        {"projectId": str(uuid.uuid4()), "count": 2, "contentType": content_type},
    )
    for issued in batch["items"]:
        assert issued["headers"] == {"Content-Type": content_type}
        assert issued["key"].endswith("/original.jpg")
        put_as_told(client, issued, data)
        client.post(f"/v1/photos/{issued['photoId']}/complete", headers=pat)
    drain(client.app)  # type: ignore[arg-type]

    for issued in batch["items"]:
        view = client.get(f"/v1/photos/{issued['photoId']}", headers=pat).json()
        assert view["processing"]["status"] == "processed", view
        served = get_presigned(client, view["downloads"]["original"]["url"])
        assert served.headers["content-type"] == content_type


@BOTH
def test_a_put_with_another_type_than_declared_is_refused(
    client: TestClient, make_token, backend: str
) -> None:
    pat = bearer(make_token(aud="media", roles=["photographer"], sub="pat"))
    body = {"projectId": str(uuid.uuid4()), "contentType": "image/png"}
    issued = ask(client, "/v1/photos/upload-url", pat, body)

    wrong = put_to_presigned(client, issued["uploadUrl"], factories.png_bytes(), "image/jpeg")

    assert wrong.status_code == 403


def test_an_unknown_content_type_is_a_clear_error(client: TestClient, make_token) -> None:
    pat = bearer(make_token(aud="media", roles=["photographer"], sub="pat"))
    body = {"projectId": str(uuid.uuid4()), "contentType": "image/svg+xml"}

    resp = client.post("/v1/photos/upload-url", json=body, headers=pat)

    assert resp.status_code == 422
    assert resp.headers["content-type"] == "application/problem+json"
    assert "image/heic" in resp.text  # the accepted list is named


def test_no_body_still_means_jpeg(client: TestClient, make_token) -> None:
    op = bearer(make_token(aud="backoffice", roles=["operator"], sub="op-1"))

    resp = client.post("/v1/operators/me/profile-picture/upload-url", headers=op)

    assert resp.status_code == 200
    assert resp.json()["headers"] == {"Content-Type": "image/jpeg"}


@pytest.mark.parametrize("settings_overrides", [{"photo_max_bytes": 50_000}])
def test_local_disk_answers_bad_puts_at_once_and_keeps_nothing(
    client: TestClient, make_token
) -> None:
    pat = bearer(make_token(aud="media", roles=["photographer"], sub="pat"))
    project = str(uuid.uuid4())
    html, big = (ask(client, "/v1/photos/upload-url", pat, {"projectId": project}) for _ in "ab")

    not_image = put_to_presigned(client, html["uploadUrl"], b"<html><script>x</script></html>")
    too_big = put_to_presigned(client, big["uploadUrl"], factories.jpeg_bytes(800, 800, noise=True))

    assert not_image.status_code == 415
    assert not_image.json()["code"] == "not_an_image"
    assert "image/heic" in not_image.json()["detail"]
    assert too_big.status_code == 413
    app = client.app
    for issued in (html, big):
        assert app.state.store.head(issued["key"]) is None  # type: ignore[attr-defined]
    view = client.get(f"/v1/photos/{html['photoId']}", headers=pat).json()
    assert view["status"] == "rejected"
    assert view["processing"] == {
        "status": "failed",
        "failedStep": "upload",
        "reason": "not_an_image",
    }

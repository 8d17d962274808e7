"""A presigned PUT URL outlives its upload's settlement: later writes must change nothing served.

Each case PUTs again to an upload's own URL after the upload was settled (uploaded, rejected,
erased). Local disk refuses the write (409 `upload_already_settled`); S3 accepts any PUT until
the URL expires, so the service notices the write (bucket event or sweeper) and undoes it, and
meanwhile serves and processes the bytes it accepted, never the new ones.
"""

from __future__ import annotations

import io
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from mediaplane.imaging import ImageLimits
from mediaplane.imaging.header import upright_size_of
from mediaplane.imaging.normalise import normalise_picture
from mediaplane.jobs import derivatives
from mediaplane.runtime import Runtime
from mediaplane.uploads import PendingUpload, UploadStatus
from mediaplane.uploads import service as uploads_service
from tests.imaging.factories import picture
from tests.media_api.helpers import bearer, get_presigned, put_to_presigned

FACES = Path(__file__).parents[1] / "fixtures" / "faces"
PHOTO = (FACES / "obama_2.jpg").read_bytes()
SELFIE = (FACES / "biden_1.jpg").read_bytes()
HTML = b"<!doctype html><html><script>alert(document.cookie)</script></html>\n" * 20
BOTH = pytest.mark.parametrize("backend", ["local", "s3"])
EVENTS_AUTH = {"Authorization": "Bearer test-events-secret"}


def photographer(make_token) -> dict[str, str]:
    return bearer(make_token(aud="media", roles=["photographer"], sub="photographer-1"))


def row(runtime: Runtime, upload_id: str) -> PendingUpload:
    with runtime.database.transaction() as session:
        found = uploads_service.get(session, upload_id=uuid.UUID(upload_id))
    assert found is not None
    return found


def event(client: TestClient, runtime: Runtime, key: str) -> None:
    """The bucket event a write to `key` produces (S3 records; local disk has its own route)."""
    body = {
        "Records": [
            {
                "eventName": "s3:ObjectCreated:Put",
                "s3": {"bucket": {"name": runtime.settings.s3_bucket}, "object": {"key": key}},
            }
        ]
    }
    assert client.post("/v1/storage/events", json=body, headers=EVENTS_AUTH).status_code == 200


def normalised(data: bytes) -> bytes:
    limits = ImageLimits(max_pixels=50_000_000, max_bytes=50 * 1024 * 1024)
    return normalise_picture(data, limits).data


def put_again(client: TestClient, url: str, data: bytes, backend: str) -> None:
    """The second PUT: refused on local disk, accepted by the S3 server."""
    resp = put_to_presigned(client, url, data)
    if backend == "local":
        assert resp.status_code == 409, resp.text
        assert resp.headers["content-type"] == "application/problem+json"
        assert resp.json()["code"] == "upload_already_settled"
    else:
        assert resp.status_code == 200, resp.text


def uploaded_photo(client: TestClient, make_token, data: bytes = PHOTO) -> dict:
    headers = photographer(make_token)
    body = client.post(
        "/v1/photos/upload-url", json={"projectId": str(uuid.uuid4())}, headers=headers
    ).json()
    # Local disk answers a non-image 415 at once (and rejects it); S3 takes anything.
    assert put_to_presigned(client, body["uploadUrl"], data).status_code in (200, 415)
    client.post(f"/v1/photos/{body['photoId']}/complete", headers=headers)
    return body


def served_original(client: TestClient, make_token, photo_id: str):
    view = client.get(f"/v1/photos/{photo_id}", headers=photographer(make_token)).json()
    return get_presigned(client, view["downloads"]["original"]["url"])


def keys_under(runtime: Runtime, prefix: str) -> list[str]:
    return list(runtime.store.list(prefix))


@BOTH
@pytest.mark.parametrize("signal", ["event", "sweeper"])
def test_a_second_put_never_changes_a_processed_photo(
    client: TestClient, app, runtime: Runtime, make_token, backend: str, signal: str
) -> None:
    photo = uploaded_photo(client, make_token)
    assert row(runtime, photo["photoId"]).status == UploadStatus.UPLOADED
    put_again(client, photo["uploadUrl"], HTML, backend)

    # Before any signal: what is served and processed is still the accepted photo.
    served = served_original(client, make_token, photo["photoId"])
    assert served.content == PHOTO and served.headers["content-type"] == "image/jpeg"
    accepted = row(runtime, photo["photoId"])
    assert runtime.store.read(uploads_service.accepted_key(accepted)) == PHOTO

    # Once noticed, the write is undone: the spec's key holds the accepted bytes again.
    if signal == "event":
        event(client, runtime, photo["key"])
    else:
        app.state.uploads.sweep()
    assert runtime.store.read(photo["key"]) == PHOTO
    assert served_original(client, make_token, photo["photoId"]).content == PHOTO
    assert row(runtime, photo["photoId"]).status == UploadStatus.UPLOADED


@BOTH
@pytest.mark.parametrize("settings_overrides", [{"photo_max_bytes": 200_000}])
def test_a_second_put_cannot_bypass_the_byte_limit(
    client: TestClient, app, runtime: Runtime, make_token, backend: str
) -> None:
    small = picture(64, 48).jpegsave_buffer()
    photo = uploaded_photo(client, make_token, small)
    assert row(runtime, photo["photoId"]).status == UploadStatus.UPLOADED
    big = picture(2000, 2000).jpegsave_buffer(Q=100)
    assert len(big) > 200_000
    put_again(client, photo["uploadUrl"], big, backend)
    assert served_original(client, make_token, photo["photoId"]).content == small
    app.state.uploads.sweep()
    assert runtime.store.read(photo["key"]) == small
    assert row(runtime, photo["photoId"]).size == len(small)


@pytest.mark.parametrize("settings_overrides", [{"photo_max_bytes": 200_000}])
def test_local_disk_refuses_more_than_the_kind_allows_while_streaming(
    client: TestClient, runtime: Runtime, make_token
) -> None:
    headers = photographer(make_token)
    body = client.post(
        "/v1/photos/upload-url", json={"projectId": str(uuid.uuid4())}, headers=headers
    ).json()
    resp = put_to_presigned(client, body["uploadUrl"], b"\xff\xd8\xff" + b"0" * 300_000)
    assert resp.status_code == 413 and resp.json()["code"] == "too_large"
    assert runtime.store.head(body["key"]) is None
    assert row(runtime, body["photoId"]).status == UploadStatus.PENDING


@BOTH
def test_a_put_after_rejection_leaves_nothing_behind(
    client: TestClient, app, runtime: Runtime, make_token, backend: str
) -> None:
    photo = uploaded_photo(client, make_token, HTML)
    assert row(runtime, photo["photoId"]).reason == "not_an_image"
    prefix = photo["key"].rpartition("/")[0] + "/"
    assert keys_under(runtime, prefix) == []
    put_again(client, photo["uploadUrl"], PHOTO, backend)
    event(client, runtime, photo["key"])
    assert keys_under(runtime, prefix) == []
    put_again(client, photo["uploadUrl"], PHOTO, backend)
    app.state.uploads.sweep()
    assert keys_under(runtime, prefix) == []
    assert row(runtime, photo["photoId"]).status == UploadStatus.REJECTED


def consenting_user(client: TestClient, make_token, sub: str) -> dict[str, str]:
    user = bearer(make_token(aud="media", roles=["user"], sub=sub))
    assert client.put("/v1/me/consents/biometric_processing", headers=user).status_code == 201
    return user


@BOTH
@pytest.mark.parametrize("uploaded_first", [True, False])
def test_an_erased_selfie_never_comes_back(
    client: TestClient, app, runtime: Runtime, make_token, backend: str, uploaded_first: bool
) -> None:
    user = consenting_user(client, make_token, "user-erased")
    selfie = client.post("/v1/selfie/upload-url", headers=user).json()
    if uploaded_first:
        assert put_to_presigned(client, selfie["uploadUrl"], SELFIE).status_code == 200
        client.post(f"/v1/selfie/{selfie['selfieId']}/complete", headers=user)
        assert client.get("/v1/me/selfie", headers=user).json()["status"] == "uploaded"
    assert client.delete("/v1/me/selfie", headers=user).status_code == 204
    assert keys_under(runtime, "selfies/user-erased/") == []

    put_again(client, selfie["uploadUrl"], SELFIE, backend)
    event(client, runtime, selfie["key"])
    assert keys_under(runtime, "selfies/user-erased/") == []
    put_again(client, selfie["uploadUrl"], SELFIE, backend)
    app.state.uploads.sweep()
    assert keys_under(runtime, "selfies/user-erased/") == []
    mine = client.get("/v1/me/selfie", headers=user).json()
    assert mine["status"] == "erased" and mine["download"] is None


@BOTH
def test_an_old_profile_picture_url_cannot_change_the_shown_picture(
    client: TestClient, app, runtime: Runtime, make_token, backend: str
) -> None:
    op = bearer(make_token(aud="backoffice", roles=["operator"], sub="op-5"))
    uploaded = (FACES / "obama_1.jpg").read_bytes()
    good = normalised(uploaded)  # what an accepted profile picture is served as
    body = client.post("/v1/operators/me/profile-picture/upload-url", headers=op).json()
    assert put_to_presigned(client, body["uploadUrl"], uploaded).status_code == 200
    app.state.uploads.sweep()
    put_again(client, body["uploadUrl"], HTML, backend)

    def shown() -> bytes:
        got = client.get("/v1/operators/op-5/profile-picture", headers=op).json()
        return get_presigned(client, got["url"]).content

    assert shown() == good  # before any signal
    app.state.uploads.sweep()
    assert shown() == good
    assert runtime.store.read("operators/op-5/profile.jpg") == good


@BOTH
def test_the_watch_ends_with_the_url_and_leaves_only_the_spec_keys(
    client: TestClient, app, runtime: Runtime, make_token, backend: str
) -> None:
    photo = uploaded_photo(client, make_token)
    prefix = photo["key"].rpartition("/")[0] + "/"
    put_again(client, photo["uploadUrl"], HTML, backend)
    # The URL and its grace are over (moved into the past rather than waited for).
    past = datetime.now(UTC) - timedelta(seconds=1)
    with runtime.database.transaction() as session:
        session.execute(
            update(PendingUpload)
            .where(PendingUpload.id == uuid.UUID(photo["photoId"]))
            .values(url_expires_at=past, watch_until=past)
        )
    app.state.uploads.sweep()  # the last check restores the key; the aside copy waits
    assert runtime.store.read(photo["key"]) == PHOTO
    done = row(runtime, photo["photoId"])
    assert done.watch_until is None
    assert served_original(client, make_token, photo["photoId"]).content == PHOTO
    with runtime.database.transaction() as session:
        session.execute(
            update(PendingUpload)
            .where(PendingUpload.id == uuid.UUID(photo["photoId"]))
            .values(aside_delete_after=past)
        )
    app.state.uploads.sweep()  # no GET URL of the aside copy is live any more: it goes
    assert keys_under(runtime, prefix) == [photo["key"]]
    assert row(runtime, photo["photoId"]).aside_key is None


@BOTH
def test_originals_are_served_with_their_real_type_and_nosniff(
    client: TestClient, runtime: Runtime, make_token, backend: str
) -> None:
    png = picture(64, 48).pngsave_buffer()
    photo = uploaded_photo(client, make_token, png)
    assert row(runtime, photo["photoId"]).status == UploadStatus.UPLOADED
    served = served_original(client, make_token, photo["photoId"])
    assert served.content == png
    assert served.headers["content-type"] == "image/png"
    if backend == "local":
        assert served.headers["x-content-type-options"] == "nosniff"


def test_the_storage_route_refuses_keys_without_an_upload(
    client: TestClient, runtime: Runtime
) -> None:
    url = runtime.store.presign_put(
        "photos/x/y/original.jpg", content_type="image/jpeg", expires_in=60
    )
    resp = put_to_presigned(client, url, PHOTO)
    assert resp.status_code == 404 and resp.json()["code"] == "upload_not_found"
    assert runtime.store.head("photos/x/y/original.jpg") is None
    runtime.store.put("photos/x/y/original.jpg", io.BytesIO(PHOTO), content_type="image/jpeg")


@BOTH
def test_processing_after_a_late_write_reads_the_accepted_photo(
    client: TestClient, runtime: Runtime, make_token, backend: str
) -> None:
    # The jobs run later than settlement: whatever reached the key meanwhile is not their input.
    photo = uploaded_photo(client, make_token)
    put_again(client, photo["uploadUrl"], HTML, backend)
    upload = row(runtime, photo["photoId"])
    original = derivatives.original_of(runtime.store, runtime.settings, upload)
    facts = derivatives.thumbnails(runtime.store, runtime.settings, upload, original)
    assert facts["derivatives"] == ["thumb-400", "thumb-800"]
    assert (facts["width"], facts["height"]) == upright_size_of(PHOTO)

"""Presigned uploads end to end, on local disk and on a real S3 server (SeaweedFS).

A client gets an upload URL, PUTs bytes with plain httpx as a browser would, and the upload is
noticed and handed on to processing exactly once, whichever signals fire and however many.
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from mediaplane.app import create_app
from mediaplane.imaging import ImageLimits
from mediaplane.imaging.normalise import normalise_picture
from mediaplane.runtime import Runtime, open_runtime
from mediaplane.settings import Settings
from mediaplane.uploads import PendingUpload, UploadStatus
from mediaplane.uploads import service as uploads_service
from tests.media_api.helpers import bearer, get_presigned, put_to_presigned

FACES = Path(__file__).parents[1] / "fixtures" / "faces"
PHOTO = (FACES / "obama_2.jpg").read_bytes()
BOTH = pytest.mark.parametrize("backend", ["local", "s3"])


class HandOffRecorder:
    """Counts hand-offs to processing, the thing that must happen exactly once per upload."""

    def __init__(self, app: FastAPI) -> None:
        self.calls: list[uuid.UUID] = []
        self._lock = threading.Lock()
        app.state.uploads.hand_off.append(self)

    def __call__(self, session: Session, upload: PendingUpload) -> None:
        with self._lock:
            self.calls.append(upload.id)


def photographer(make_token, sub: str = "photographer-1") -> dict[str, str]:
    return bearer(make_token(aud="media", roles=["photographer"], sub=sub))


def new_photo_url(client: TestClient, headers: dict[str, str], project: uuid.UUID) -> dict:
    resp = client.post("/v1/photos/upload-url", json={"projectId": str(project)}, headers=headers)
    assert resp.status_code == 201, resp.text
    return resp.json()


def upload_row(runtime: Runtime, upload_id: str) -> PendingUpload:
    with runtime.database.transaction() as session:
        row = uploads_service.get(session, upload_id=uuid.UUID(upload_id))
    assert row is not None
    return row


def s3_event(bucket: str, key: str) -> dict:
    return {
        "Records": [
            {
                "eventName": "s3:ObjectCreated:Put",
                "s3": {"bucket": {"name": bucket}, "object": {"key": key}},
            }
        ]
    }


def normalised(data: bytes) -> bytes:
    """What an accepted profile picture is served as."""
    limits = ImageLimits(max_pixels=50_000_000, max_bytes=50 * 1024 * 1024)
    return normalise_picture(data, limits).data


EVENTS_AUTH = {"Authorization": "Bearer test-events-secret"}


@BOTH
def test_keys_and_lifetimes_follow_the_spec(client: TestClient, make_token, backend) -> None:
    project = uuid.uuid4()
    body = new_photo_url(client, photographer(make_token), project)
    assert body["key"] == f"photos/{project}/{body['photoId']}/original.jpg"
    assert body["expiresInSeconds"] == 600

    user = bearer(make_token(aud="media", roles=["user"], sub="user-7"))
    assert client.put("/v1/me/consents/biometric_processing", headers=user).status_code == 201
    selfie = client.post("/v1/selfie/upload-url", headers=user).json()
    assert re.fullmatch(r"selfies/user-7/\d{13}\.jpg", selfie["key"]), selfie["key"]
    assert selfie["expiresInSeconds"] == 600

    op = bearer(make_token(aud="backoffice", roles=["operator"], sub="op-3"))
    picture = client.post("/v1/operators/me/profile-picture/upload-url", headers=op)
    assert picture.status_code == 200
    assert picture.json()["fileUrl"] == "storage:///operators/op-3/profile.jpg"
    assert "operators/op-3/profile.jpg" in picture.json()["uploadUrl"]


@BOTH
def test_every_signal_at_once_hands_off_exactly_once(
    client: TestClient, app: FastAPI, runtime: Runtime, make_token, backend: str
) -> None:
    recorder = HandOffRecorder(app)
    headers = photographer(make_token)
    bucket = runtime.settings.s3_bucket
    photos = [new_photo_url(client, headers, uuid.uuid4()) for _ in range(4)]
    for photo in photos:
        assert put_to_presigned(client, photo["uploadUrl"], PHOTO).status_code == 200

    # Webhook, sweeper and the client's `complete` race each other for every photo, twice.
    barrier = threading.Barrier(6 * len(photos) + 2)
    statuses: list[int] = []

    def webhook(key: str) -> None:
        barrier.wait()
        r = client.post("/v1/storage/events", json=s3_event(bucket, key), headers=EVENTS_AUTH)
        statuses.append(r.status_code)

    def complete(photo_id: str) -> None:
        barrier.wait()
        statuses.append(client.post(f"/v1/photos/{photo_id}/complete", headers=headers).status_code)

    def sweep() -> None:
        barrier.wait()
        app.state.uploads.sweep()

    threads = [threading.Thread(target=sweep) for _ in range(2)]
    for photo in photos:
        for _ in range(2):
            threads += [
                threading.Thread(target=webhook, args=(photo["key"],)),
                threading.Thread(target=complete, args=(photo["photoId"],)),
                threading.Thread(target=webhook, args=(photo["key"],)),
            ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)

    assert set(statuses) == {200}
    assert sorted(map(str, recorder.calls)) == sorted(p["photoId"] for p in photos)
    for photo in photos:
        row = upload_row(runtime, photo["photoId"])
        assert row.status == UploadStatus.UPLOADED
        assert row.size == len(PHOTO)
        assert row.processing_requested_at is not None
        expected = {"storage"} if backend == "local" else {"webhook", "sweeper", "client"}
        assert row.completed_via in expected
        view = client.get(f"/v1/photos/{photo['photoId']}", headers=headers).json()
        assert view["status"] == "uploaded"
        assert get_presigned(client, view["downloads"]["original"]["url"]).content == PHOTO


@BOTH
@pytest.mark.parametrize("settings_overrides", [{"photo_max_bytes": 50_000}])
def test_oversize_and_non_image_uploads_are_rejected_and_deleted(
    client: TestClient, app, runtime: Runtime, make_token, backend: str
) -> None:
    recorder = HandOffRecorder(app)
    headers = photographer(make_token)
    big = new_photo_url(client, headers, uuid.uuid4())
    text = new_photo_url(client, headers, uuid.uuid4())
    assert len(PHOTO) > 50_000
    oversize = put_to_presigned(client, big["uploadUrl"], PHOTO)
    # Local disk has the bytes in hand and answers 415 at once; S3 takes anything.
    text_put = put_to_presigned(client, text["uploadUrl"], b"hello, I am text\n" * 50)
    assert text_put.status_code == (415 if backend == "local" else 200)
    for photo in (big, text):
        client.post(f"/v1/photos/{photo['photoId']}/complete", headers=headers)
    assert upload_row(runtime, text["photoId"]).reason == "not_an_image"
    rejected = [text]
    if backend == "local":
        # The storage route knows the kind's limit: it refuses while streaming, stores nothing.
        assert oversize.status_code == 413 and oversize.json()["code"] == "too_large"
        assert upload_row(runtime, big["photoId"]).status == UploadStatus.PENDING
        assert runtime.store.head(big["key"]) is None
    else:  # S3 takes any size: the upload is rejected when noticed
        assert oversize.status_code == 200
        assert upload_row(runtime, big["photoId"]).reason == "file_too_large"
        rejected.append(big)
    for photo in rejected:
        assert upload_row(runtime, photo["photoId"]).status == UploadStatus.REJECTED
        assert runtime.store.head(photo["key"]) is None
        view = client.get(f"/v1/photos/{photo['photoId']}", headers=headers).json()
        assert view["status"] == "rejected" and view["downloads"] == {}
        assert view["processing"]["status"] == "failed"
        assert view["processing"]["failedStep"] == "upload"
    assert recorder.calls == []


@BOTH
@pytest.mark.parametrize("settings_overrides", [{"upload_sweep_grace_seconds": 0}])
def test_urls_stop_working_after_their_expiry(
    client: TestClient, runtime: Runtime, make_token, backend: str
) -> None:
    # No race with the clock: URLs that must work are signed with their normal lifetime, and
    # only URLs that must have expired get 1 s, checked once that second is surely past.
    headers = photographer(make_token)
    done = new_photo_url(client, headers, uuid.uuid4())
    assert put_to_presigned(client, done["uploadUrl"], PHOTO).status_code == 200
    client.post(f"/v1/photos/{done['photoId']}/complete", headers=headers)
    view = client.get(f"/v1/photos/{done['photoId']}", headers=headers).json()
    assert get_presigned(client, view["downloads"]["original"]["url"]).status_code == 200

    brief = runtime.settings.model_copy(
        update={"upload_url_ttl_seconds": 1, "download_url_ttl_seconds": 1}
    )
    app = create_app(brief, database=runtime.database, store=runtime.store)
    with TestClient(app, base_url=str(client.base_url)) as short:
        view = short.get(f"/v1/photos/{done['photoId']}", headers=headers).json()
        expiring = view["downloads"]["original"]["url"]
        late = new_photo_url(short, headers, uuid.uuid4())
        time.sleep(2.2)
        assert get_presigned(short, expiring).status_code == 403
        assert put_to_presigned(short, late["uploadUrl"], PHOTO).status_code == 403
        assert runtime.store.head(late["key"]) is None
        report = app.state.uploads.sweep()
    assert report.expired == 1
    assert upload_row(runtime, late["photoId"]).status == UploadStatus.EXPIRED


@pytest.mark.parametrize("backend", ["s3"])
def test_upload_noticed_after_a_restart_on_s3(settings: Settings, make_token) -> None:
    # Real scenario: the service is down while the browser PUTs straight to S3; when it comes
    # back, the sweeper finds the object and hands the upload on.
    with (
        open_runtime(settings, migrate=False) as rt,
        TestClient(create_app(settings, database=rt.database, store=rt.store)) as first,
    ):
        photo = new_photo_url(first, photographer(make_token), uuid.uuid4())
    # Service stopped. The PUT still lands in the bucket.
    assert (
        httpx.put(
            photo["uploadUrl"], content=PHOTO, headers={"Content-Type": "image/jpeg"}
        ).status_code
        == 200
    )
    with open_runtime(settings, migrate=False) as rt:
        app = create_app(settings, database=rt.database, store=rt.store)
        recorder = HandOffRecorder(app)
        with TestClient(app):
            report = app.state.uploads.sweep()
        assert report.settled == 1
        assert [str(c) for c in recorder.calls] == [photo["photoId"]]
        assert upload_row(rt, photo["photoId"]).completed_via == "sweeper"


def test_write_without_notice_is_swept_up_on_local_disk(
    client: TestClient, app, runtime: Runtime, make_token
) -> None:
    # Local disk: a process that died between writing the object and reporting it.
    import io

    photo = new_photo_url(client, photographer(make_token), uuid.uuid4())
    runtime.store.put(photo["key"], io.BytesIO(PHOTO), content_type="image/jpeg")
    assert upload_row(runtime, photo["photoId"]).status == UploadStatus.PENDING
    recorder = HandOffRecorder(app)
    assert app.state.uploads.sweep().settled == 1
    assert [str(c) for c in recorder.calls] == [photo["photoId"]]


def test_complete_before_upload_is_a_conflict_and_changes_nothing(
    client: TestClient, runtime: Runtime, make_token
) -> None:
    headers = photographer(make_token)
    photo = new_photo_url(client, headers, uuid.uuid4())
    resp = client.post(f"/v1/photos/{photo['photoId']}/complete", headers=headers)
    assert resp.status_code == 409 and resp.json()["code"] == "upload_incomplete"
    assert upload_row(runtime, photo["photoId"]).status == UploadStatus.PENDING


def test_selfie_flow_and_my_selfie(client: TestClient, make_token) -> None:
    user = bearer(make_token(aud="media", roles=["user"], sub="user-9"))
    assert client.get("/v1/me/selfie", headers=user).status_code == 404
    # A page asking on load: "none yet" without an error status.
    none_yet = client.get("/v1/me/selfie", params={"optional": "true"}, headers=user)
    assert (none_yet.status_code, none_yet.content) == (204, b"")
    assert client.put("/v1/me/consents/biometric_processing", headers=user).status_code == 201
    selfie = client.post("/v1/selfie/upload-url", headers=user).json()
    assert client.get("/v1/me/selfie", headers=user).json()["status"] == "pending"
    put = put_to_presigned(client, selfie["uploadUrl"], (FACES / "biden_1.jpg").read_bytes())
    assert put.status_code == 200, put.text
    mine = client.get("/v1/me/selfie", headers=user).json()
    assert mine["selfieId"] == selfie["selfieId"] and mine["status"] == "uploaded"
    assert client.get("/v1/me/selfie?optional=true", headers=user).json() == mine
    assert client.get(mine["download"]["url"]).status_code == 200
    other = bearer(make_token(aud="media", roles=["user"], sub="user-10"))
    resp = client.post(f"/v1/selfie/{selfie['selfieId']}/complete", headers=other)
    assert resp.status_code == 404


def test_operator_profile_picture_is_replaced_and_readable(client: TestClient, make_token) -> None:
    op = bearer(make_token(aud="backoffice", roles=["operator"], sub="op-1"))
    assert client.get("/v1/operators/op-1/profile-picture", headers=op).status_code == 404
    none_yet = client.get("/v1/operators/op-1/profile-picture?optional=true", headers=op)
    assert none_yet.status_code == 204
    for face in ("obama_1.jpg", "biden_2.jpg"):
        body = client.post("/v1/operators/me/profile-picture/upload-url", headers=op).json()
        put = put_to_presigned(client, body["uploadUrl"], (FACES / face).read_bytes())
        assert put.status_code == 200, put.text
    reader = bearer(make_token(aud="media", roles=["user"]))
    got = client.get("/v1/operators/op-1/profile-picture", headers=reader)
    assert got.status_code == 200 and got.json()["expiresInSeconds"] == 900
    # Served as normalised once accepted (tests/media_api/test_profile_picture.py).
    assert client.get(got.json()["url"]).content == normalised((FACES / "biden_2.jpg").read_bytes())


def test_project_listing_is_paginated_newest_first(client: TestClient, make_token) -> None:
    headers = photographer(make_token)
    project = uuid.uuid4()
    ids = [new_photo_url(client, headers, project)["photoId"] for _ in range(5)]
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = client.get(f"/v1/projects/{project}/photos", params=params, headers=headers).json()
        seen += [item["photoId"] for item in page["items"]]
        cursor = page["nextCursor"]
        if cursor is None:
            break
    assert seen == list(reversed(ids))
    other = photographer(make_token, sub="someone-else")
    assert client.get(f"/v1/projects/{project}/photos", headers=other).json()["items"] == []
    op = bearer(make_token(aud="backoffice", roles=["operator"]))
    assert len(client.get(f"/v1/projects/{project}/photos", headers=op).json()["items"]) == 5
    bad = client.get(f"/v1/projects/{project}/photos?cursor=nonsense", headers=headers)
    assert bad.status_code == 400 and bad.json()["code"] == "invalid_cursor"


@BOTH
def test_a_rejected_profile_picture_leaves_the_previous_one(
    client: TestClient, make_token, backend: str
) -> None:
    # The key is the spec's fixed `operators/{id}/profile.jpg`: the bad PUT overwrites it.
    op = bearer(make_token(aud="backoffice", roles=["operator"], sub="op-9"))
    good = (FACES / "obama_1.jpg").read_bytes()
    for data in (good, b"not a picture at all\n" * 20):
        body = client.post("/v1/operators/me/profile-picture/upload-url", headers=op).json()
        # Local disk refuses a non-image at once (415); S3 takes it, the sweep rejects it.
        ok = 415 if data != good and backend == "local" else 200
        assert put_to_presigned(client, body["uploadUrl"], data).status_code == ok
        client.app.state.uploads.sweep()  # type: ignore[attr-defined]
    shown = client.get("/v1/operators/op-9/profile-picture", headers=op)
    assert shown.status_code == 200
    assert get_presigned(client, shown.json()["url"]).content == normalised(good)

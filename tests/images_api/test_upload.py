"""POST /_images/APP_ID/OBJECT_ID: signed multipart upload, on both storage backends."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from mediaplane.images_api.models import ImagesFile
from mediaplane.runtime import Runtime
from tests.images_api.helpers import multipart_body, signed_upload_url
from tests.imaging import factories

pytestmark = pytest.mark.parametrize("backend", ["local", "s3"])

FIXTURES = Path(__file__).parents[1] / "fixtures"


def rows(runtime: Runtime) -> list[ImagesFile]:
    with runtime.database.transaction() as session:
        return list(session.scalars(select(ImagesFile)))


def stored_keys(runtime: Runtime) -> list[str]:
    return list(runtime.store.list(""))


def test_upload_stores_object_and_row(client: TestClient, app, runtime: Runtime) -> None:
    data = (FIXTURES / "faces" / "obama_1.jpg").read_bytes()
    url = signed_upload_url(app, "app", "obj1")
    resp = client.post(url, files={"file": ("me.jpg", data, "image/jpeg")})
    assert resp.status_code == 200, resp.text
    url = "authgearimages:///app/obj1"
    assert resp.json() == {"result": {"upload_url": url, "url": url}}
    (row,) = rows(runtime)
    assert (row.app_id, row.object_id, row.size) == ("app", "obj1", len(data))
    assert row.metadata_ == {"uploaded_by": "user", "user_id": "user-1"}
    assert runtime.store.read("app/obj1") == data


def test_second_upload_is_refused_and_first_kept(client: TestClient, app, runtime) -> None:
    first = (FIXTURES / "faces" / "obama_1.jpg").read_bytes()
    second = (FIXTURES / "faces" / "biden_1.jpg").read_bytes()
    assert client.post(signed_upload_url(app), files={"file": ("a.jpg", first)}).status_code == 200
    resp = client.post(signed_upload_url(app), files={"file": ("b.jpg", second)})
    assert resp.status_code == 409
    assert resp.json()["error"]["reason"] == "ImageAlreadyExists"
    assert runtime.store.read("app/obj1") == first
    assert len(rows(runtime)) == 1


def bad_requests() -> list:
    jpeg = factories.jpeg_bytes(64, 48)
    return [
        pytest.param(
            {"files": {"file": ("a.txt", b"hello, not an image\n" * 10)}},
            400,
            "NotAnImage",
            id="text-file",
        ),
        pytest.param(
            {"files": {"file": ("a.jpg", factories.truncated_jpeg())}},
            400,
            "CorruptImage",
            id="truncated-jpeg",
        ),
        pytest.param({"files": {"file": ("a.jpg", b"")}}, 400, "EmptyFile", id="zero-bytes"),
        pytest.param(
            {"files": {"file": ("bomb.png", factories.bomb_png())}},
            400,
            "TooManyPixels",
            id="png-bomb-20000x20000",
        ),
        pytest.param(
            {
                "content": multipart_body(("file", jpeg), ("file", jpeg)),
                "headers": {"content-type": "multipart/form-data; boundary=b0undary"},
            },
            400,
            "InvalidMultipart",
            id="two-file-parts",
        ),
        pytest.param(
            {
                "content": multipart_body(("image", jpeg)),
                "headers": {"content-type": "multipart/form-data; boundary=b0undary"},
            },
            400,
            "InvalidMultipart",
            id="wrong-field-name",
        ),
        pytest.param(
            {
                "content": multipart_body(("file", jpeg)),
                "headers": {"content-type": "multipart/form-data"},
            },
            400,
            "InvalidMultipart",
            id="missing-boundary",
        ),
        pytest.param(
            {
                "content": multipart_body(("file", jpeg))[:-20],
                "headers": {"content-type": "multipart/form-data; boundary=b0undary"},
            },
            400,
            "InvalidMultipart",
            id="body-cut-short",
        ),
        pytest.param(
            {"content": jpeg, "headers": {"content-type": "image/jpeg"}},
            400,
            "InvalidMultipart",
            id="not-multipart",
        ),
    ]


@pytest.mark.parametrize(("request_kwargs", "status", "reason"), bad_requests())
def test_bad_input_is_refused_and_leaves_nothing(
    client: TestClient, app, runtime: Runtime, request_kwargs: dict, status: int, reason: str
) -> None:
    resp = client.post(signed_upload_url(app), **request_kwargs)
    assert resp.status_code == status, resp.text
    error = resp.json()["error"]
    assert error["reason"] == reason and error["code"] == status and error["message"]
    assert rows(runtime) == []
    assert stored_keys(runtime) == []
    assert list((runtime.settings.data_dir / "tmp").glob("*")) == []


@pytest.mark.parametrize("settings_overrides", [{"images_max_bytes": 100_000}])
def test_oversize_file_is_refused_while_streaming(client: TestClient, app, runtime) -> None:
    big = factories.jpeg_bytes(1200, 900, noise=True)
    assert len(big) > 100_000
    resp = client.post(signed_upload_url(app), files={"file": ("big.jpg", big)})
    assert resp.status_code == 413
    assert resp.json()["error"]["reason"] == "FileTooLarge"
    assert rows(runtime) == [] and stored_keys(runtime) == []


def test_signature_problems(client: TestClient, app, runtime) -> None:
    jpeg = {"file": ("a.jpg", factories.jpeg_bytes(32, 32))}
    url = signed_upload_url(app)
    unsigned = url.split("&x-authgear-signature=")[0]
    resp = client.post(unsigned, files=jpeg)
    assert (resp.status_code, resp.json()["error"]["reason"]) == (400, "InvalidSignatureQueryParam")

    wrong_object = url.replace("/obj1?", "/obj2?")
    resp = client.post(wrong_object, files=jpeg)
    assert (resp.status_code, resp.json()["error"]["reason"]) == (400, "InvalidSignature")
    assert resp.json()["error"]["name"] == "Invalid"

    old = signed_upload_url(app, now=datetime.now(UTC) - timedelta(seconds=901))
    resp = client.post(old, files=jpeg)
    assert (resp.status_code, resp.json()["error"]["reason"]) == (400, "ExpiredSignature")

    other_host = TestClient(app, base_url="http://other.example")
    resp = other_host.post(url.replace("http://testserver", "http://other.example"), files=jpeg)
    assert (resp.status_code, resp.json()["error"]["reason"]) == (400, "InvalidSignature")
    assert rows(runtime) == [] and stored_keys(runtime) == []


def signed_with_raw_metadata(app, metadata: str | None) -> str:
    """A correctly signed URL whose `x-authgear-metadata` is `metadata` as given (or absent)."""
    return str(
        app.state.images_signer.sign_url(
            method="POST",
            origin="http://testserver",
            host="testserver",
            path="/_images/app/obj1",
            params=[] if metadata is None else [("x-authgear-metadata", metadata)],
            now=datetime.now(UTC),
            expires_in=900,
        )
    )


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@pytest.mark.parametrize(
    "metadata",
    [
        pytest.param(None, id="absent"),
        pytest.param("", id="empty"),
        pytest.param(b64(b'{"uploaded_by":"user"}'), id="user-without-user-id"),
        pytest.param(b64(b'{"uploaded_by":"user","user_id":""}'), id="empty-user-id"),
        pytest.param(b64(b'{"uploaded_by":"user","user_id":"u","role":"x"}'), id="extra-key"),
        pytest.param(b64(b'{"uploaded_by":"root","user_id":"u"}'), id="unknown-uploader"),
        pytest.param(b64(b'["user"]'), id="not-an-object"),
        pytest.param(b64(b"{not json"), id="not-json"),
        pytest.param("!!not base64!!", id="not-base64"),
    ],
)
def test_bad_metadata_is_refused_by_the_endpoint(
    client: TestClient, app, runtime: Runtime, metadata: str | None
) -> None:
    # The signature is good: the metadata itself is what the endpoint must refuse.
    jpeg = {"file": ("a.jpg", factories.jpeg_bytes(32, 32))}
    resp = client.post(signed_with_raw_metadata(app, metadata), files=jpeg)
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"]["name"] == "Invalid"
    assert resp.json()["error"]["reason"] == "InvalidMetadata"
    assert rows(runtime) == [] and stored_keys(runtime) == []


def test_good_metadata_of_either_uploader_is_stored(client: TestClient, app, runtime) -> None:
    jpeg = {"file": ("a.jpg", factories.jpeg_bytes(32, 32))}
    admin = b64(b'{"uploaded_by":"admin_api","user_id":"u9"}')
    resp = client.post(signed_with_raw_metadata(app, admin), files=jpeg)
    assert resp.status_code == 200, resp.text
    (row,) = rows(runtime)
    assert row.metadata_ == {"uploaded_by": "admin_api", "user_id": "u9"}

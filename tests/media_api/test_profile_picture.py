"""An operator's profile picture is served normalised: upright, stripped, ≤ 1024 px, JPEG,
at the spec's key, whatever was uploaded (a phone JPEG with GPS, a HEIC)."""

from __future__ import annotations

from pathlib import Path

import pytest
import pyvips
from fastapi.testclient import TestClient

from tests.imaging import factories
from tests.media_api.helpers import bearer, get_presigned, put_to_presigned

HEIC = Path(__file__).parents[1] / "fixtures" / "heic"
BOTH = pytest.mark.parametrize("backend", ["local", "s3"])


def upload_picture(client: TestClient, op: dict[str, str], data: bytes, content_type: str) -> None:
    body = client.post(
        "/v1/operators/me/profile-picture/upload-url",
        json={"contentType": content_type},
        headers=op,
    ).json()
    assert put_to_presigned(client, body["uploadUrl"], data, content_type).status_code == 200
    client.app.state.uploads.sweep()  # type: ignore[attr-defined]


def served(client: TestClient, op: dict[str, str], operator_id: str) -> bytes:
    shown = client.get(f"/v1/operators/{operator_id}/profile-picture", headers=op)
    assert shown.status_code == 200, shown.text
    resp = get_presigned(client, shown.json()["url"])
    assert resp.headers["content-type"] == "image/jpeg"
    return resp.content


@BOTH
def test_a_sideways_phone_photo_is_served_upright_small_and_stripped(
    client: TestClient, make_token, backend: str, runtime
) -> None:
    op = bearer(make_token(aud="backoffice", roles=["operator"], sub="op-1"))
    upload_picture(client, op, factories.orientation_fixture("Landscape", 6), "image/jpeg")

    data = served(client, op, "op-1")
    image = pyvips.Image.new_from_buffer(data, "")

    assert (image.width, image.height) == (1024, 683)  # stored 1200×1800 with EXIF 6
    assert factories.jpeg_metadata_segments(data) == []
    # At the spec's key too: the bytes there are the normalised ones.
    assert runtime.store.read("operators/op-1/profile.jpg") == data


@BOTH
def test_gps_and_every_metadata_block_are_gone(client: TestClient, make_token, backend) -> None:
    op = bearer(make_token(aud="backoffice", roles=["operator"], sub="op-2"))
    original = factories.jpeg_with_metadata()
    assert "APP1 Exif" in factories.jpeg_metadata_segments(original)

    upload_picture(client, op, original, "image/jpeg")

    assert factories.jpeg_metadata_segments(served(client, op, "op-2")) == []


def test_a_heic_picture_becomes_a_jpeg(client: TestClient, make_token) -> None:
    op = bearer(make_token(aud="backoffice", roles=["operator"], sub="op-3"))
    upload_picture(client, op, (HEIC / "landscape-irot.heic").read_bytes(), "image/heic")

    image = pyvips.Image.new_from_buffer(served(client, op, "op-3"), "")

    assert (image.width, image.height) == (320, 213)  # upright from irot, never enlarged

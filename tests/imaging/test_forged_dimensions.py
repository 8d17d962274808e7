"""Images whose headers claim more pixels than their data holds are refused (`image_truncated`);
legitimate images, however compressible, are not.

The forgery of issue 9: a real 16×16 JPEG (889 bytes) with its frame header patched to say
7000×7000 was accepted as a 49 MP image, libjpeg drawing the missing pixels in grey.
"""

from __future__ import annotations

import uuid

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from mediaplane.images_api.models import ImagesFile
from mediaplane.imaging import ImageLimits, ImageRejected, inspect_image
from mediaplane.imaging.cover import check_data_covers
from mediaplane.runtime import Runtime
from tests.images_api.helpers import signed_upload_url
from tests.imaging import factories
from tests.media_api.helpers import bearer, put_to_presigned

LIMITS = ImageLimits(max_pixels=50_000_000, max_bytes=50 * 1024 * 1024)

FORGED = {
    "baseline-jpeg": lambda: factories.jpeg_claiming(7000, 7000),
    "progressive-jpeg": lambda: factories.progressive_jpeg_claiming(7000, 7000),
    "png": lambda: factories.png_claiming(7000, 7000),
}


@pytest.fixture(scope="module")
def flat_images() -> dict[str, bytes]:
    """One-colour 4000×3000 pictures: as small as a legitimate 12 MP image gets."""
    return {
        fmt: factories.flat_image(fmt, 4000, 3000)
        for fmt in ("jpeg", "progressive-jpeg", "png", "webp")
    }


@pytest.mark.parametrize("kind", sorted(FORGED))
def test_a_header_claiming_more_than_the_data_holds_is_refused(kind: str) -> None:
    data = FORGED[kind]()
    assert len(data) < 1000
    with pytest.raises(ImageRejected) as refused:
        inspect_image(data, LIMITS)
    assert refused.value.reason == "image_truncated"
    assert refused.value.details["width"] == 7000
    assert refused.value.details["min_data_bytes"] > 10 * len(data)
    assert "7000×7000" in refused.value.message


@pytest.mark.parametrize("lossless", [False, True], ids=["lossy", "lossless"])
def test_a_forged_webp_is_refused_by_its_decoder(lossless: bool) -> None:
    # No byte floor for WebP (its range coder spends under a bit on a flat block); libwebp
    # refuses to make pixels from a frame that is not there.
    data = factories.webp_claiming(7000, 7000, lossless=lossless)
    with pytest.raises(ImageRejected) as refused:
        inspect_image(data, LIMITS)
    assert refused.value.reason == "corrupt_image"


@pytest.mark.parametrize("fmt", ["jpeg", "progressive-jpeg", "png", "webp"])
def test_a_flat_large_image_is_accepted(fmt: str, flat_images: dict[str, bytes]) -> None:
    data = flat_images[fmt]
    info = inspect_image(data, LIMITS)
    assert (info.width, info.height) == (4000, 3000)


def test_the_floor_is_close_to_what_a_flat_png_really_needs(flat_images: dict[str, bytes]) -> None:
    # The PNG floor is deflate's own limit, so the flattest real PNG sits just above it: a
    # floor twice as high would already refuse it.
    data = flat_images["png"]
    check_data_covers(data, len(data))
    with pytest.raises(ImageRejected):
        check_data_covers(data, len(data) // 2)


def test_metadata_padding_does_not_count_as_image_data() -> None:
    # A 300 KB comment before the scan makes the file big, not its data.
    forged = factories.jpeg_claiming(7000, 7000)
    comment = b"\xff\xfe" + (65535).to_bytes(2, "big") + b"x" * 65533
    padded = forged[:2] + comment * 5 + forged[2:]
    with pytest.raises(ImageRejected) as refused:
        check_data_covers(padded, len(padded))
    assert refused.value.reason == "image_truncated"


def test_scan_data_that_stops_before_the_last_block_is_refused() -> None:
    # Enough bytes for the floor, but the scan ends (with a proper EOI) a third of the way
    # down: libjpeg would paint the rest grey, and `fail_on=truncated` lets that through.
    whole = factories.jpeg_bytes(1200, 900, noise=True)
    cut = whole[: len(whole) // 3] + b"\xff\xd9"
    with pytest.raises(ImageRejected) as refused:
        inspect_image(cut, LIMITS)
    assert refused.value.reason == "image_truncated"
    assert "premature end" in refused.value.message.lower()


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_the_images_upload_refuses_a_forged_jpeg(client: TestClient, app, runtime: Runtime) -> None:
    forged = factories.jpeg_claiming(7000, 7000)
    resp = client.post(signed_upload_url(app), files={"file": ("me.jpg", forged, "image/jpeg")})
    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    assert error["reason"] == "ImageTruncated"
    assert error["info"]["width"] == 7000
    with runtime.database.transaction() as session:
        assert list(session.scalars(select(ImagesFile))) == []
    assert list(runtime.store.list("")) == []


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_the_media_api_arrival_check_rejects_a_forged_jpeg(
    client: TestClient, runtime: Runtime, make_token, backend: str
) -> None:
    headers = bearer(make_token(aud="media", roles=["photographer"], sub="photographer-1"))
    resp = client.post(
        "/v1/photos/upload-url", json={"projectId": str(uuid.uuid4())}, headers=headers
    )
    assert resp.status_code == 201, resp.text
    photo = resp.json()
    forged = factories.progressive_jpeg_claiming(7000, 7000)
    assert put_to_presigned(client, photo["uploadUrl"], forged).status_code == 200
    client.post(f"/v1/photos/{photo['photoId']}/complete", headers=headers)
    view = client.get(f"/v1/photos/{photo['photoId']}", headers=headers).json()
    assert view["status"] == "rejected", view
    assert view.get("reason") == "image_truncated", view
    assert list(runtime.store.list("")) == []

"""iPhone photos on the Images server: a HEIC upload is kept as uploaded and served as
`original` with its real type, and as an upright JPEG `profile`; on both storage backends."""

from __future__ import annotations

from pathlib import Path

import pytest
import pyvips
from fastapi.testclient import TestClient

from tests.images_api.helpers import signed_upload_url

HEIC = Path(__file__).parents[1] / "fixtures" / "heic"


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_heic_original_as_uploaded_and_profile_as_jpeg(
    client: TestClient, app, backend: str
) -> None:
    data = (HEIC / "landscape-irot.heic").read_bytes()
    url = signed_upload_url(app, "app", "iphone1")

    stored = client.post(url, files={"file": ("IMG_0001.HEIC", data, "image/heic")})
    original = client.get("/_images/app/iphone1/original")
    profile = client.get("/_images/app/iphone1/profile")

    assert stored.status_code == 200, stored.text
    assert original.headers["content-type"] == "image/heic"
    assert original.content == data
    assert profile.headers["content-type"] == "image/jpeg"
    rendered = pyvips.Image.new_from_buffer(profile.content, "")
    assert (rendered.width, rendered.height) == (240, 240)
    assert original.headers["access-control-allow-origin"] == "*"

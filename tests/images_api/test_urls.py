"""`authgearimages:///` URLs in and HTTPS profile URLs out."""

from __future__ import annotations

import pytest

from mediaplane.errors import InvalidInput
from mediaplane.images_api import parse_images_url


def test_parse_valid_url() -> None:
    ref = parse_images_url("authgearimages:///app1/abcDEF-123_x")
    assert (ref.app_id, ref.object_id) == ("app1", "abcDEF-123_x")
    assert ref.images_url == "authgearimages:///app1/abcDEF-123_x"


@pytest.mark.parametrize(
    "url",
    [
        "https://app1/x",
        "authgearimages://app1/x",
        "authgearimages:///app1",
        "authgearimages:///app1/x/y",
        "authgearimages:///App_1/x",
        "authgearimages:///app1/x y",
        "authgearimages:///app1/",
        "authgearimages:////x",
    ],
)
def test_reject_other_forms(url: str) -> None:
    with pytest.raises(InvalidInput):
        parse_images_url(url)


def test_output_url_uses_images_host_else_app_host() -> None:
    ref = parse_images_url("authgearimages:///app1/OBJ")
    assert ref.public_url(images_host=None, app_host="app1.authgearapps.com") == (
        "https://app1.authgearapps.com/_images/app1/OBJ/profile"
    )
    assert ref.public_url(images_host="cdn.authgearappsimages.com", app_host="app1.x") == (
        "https://cdn.authgearappsimages.com/_images/app1/OBJ/profile"
    )

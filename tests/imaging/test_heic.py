"""HEIC (the iPhone camera's format): accepted, upright from `irot`/`imir`, rendered as JPEG.

The fixtures in tests/fixtures/heic were made with libheif's x265 encoder (pillow-heif):
`landscape-irot*.heic` store the pixels of `exif-orientation/Landscape_0.jpg` turned (and
mirrored), with the HEIF transform boxes saying how to show them upright.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import pyvips

from mediaplane.imaging import ImageLimits, ImageRejected, make_thumbnails, make_watermarked
from mediaplane.imaging.formats import SNIFF_BYTES, ImageFormat, sniff_format
from mediaplane.imaging.header import upright_size_of
from mediaplane.imaging.inspect import inspect_image
from mediaplane.imaging.profile import render_profile
from tests.imaging import factories

HEIC_DIR = factories.FIXTURES / "heic"
LIMITS = ImageLimits(max_pixels=50_000_000, max_bytes=50 * 1024 * 1024)


def upright_reference(width: int) -> pyvips.Image:
    source = factories.ORIENTATION_DIR / "Landscape_0.jpg"
    return pyvips.Image.thumbnail(str(source), width).colourspace("srgb")


def mean_abs_diff(a: pyvips.Image, b: pyvips.Image) -> float:
    b = b.resize(a.width / b.width, vscale=a.height / b.height)
    return float((a.cast("float") - b.cast("float")).abs().avg())


@pytest.mark.parametrize("name", ["selfie.heic", "landscape-irot.heic", "landscape-irot-imir.heic"])
def test_heic_is_accepted_as_image_heic(name: str) -> None:
    data = (HEIC_DIR / name).read_bytes()

    info = inspect_image(data, LIMITS)

    assert sniff_format(data[:SNIFF_BYTES]) is ImageFormat.HEIC
    assert info.format is ImageFormat.HEIC
    assert info.content_type == "image/heic"


@pytest.mark.parametrize("name", ["landscape-irot.heic", "landscape-irot-imir.heic"])
def test_irot_and_imir_turn_the_picture_upright(name: str) -> None:
    data = (HEIC_DIR / name).read_bytes()

    [thumb] = make_thumbnails(data, widths=[200], limits=LIMITS).values()
    rendered = pyvips.Image.new_from_buffer(thumb.data, "")

    assert upright_size_of(data) == (320, 213)
    assert (rendered.width, rendered.height) == (200, 133)
    # Upright matches the reference closely; the stored (turned) pixels would not.
    assert mean_abs_diff(rendered, upright_reference(200)) < 12
    turned = upright_reference(200).rot90()
    assert mean_abs_diff(rendered, turned) > 30


def test_profile_and_watermark_of_a_heic_are_jpegs() -> None:
    data = (HEIC_DIR / "landscape-irot.heic").read_bytes()

    profile = render_profile(data, LIMITS)
    preview = make_watermarked(data, text="© test", limits=LIMITS)

    assert profile.content_type == "image/jpeg"
    assert (profile.width, profile.height) == (240, 240)
    assert preview.content_type == "image/jpeg"
    assert (preview.width, preview.height) == (320, 213)


def test_a_heic_file_on_disk(tmp_path: Path) -> None:
    path = tmp_path / "IMG_0001.HEIC"
    path.write_bytes((HEIC_DIR / "selfie.heic").read_bytes())

    info = inspect_image(path, LIMITS)

    assert (info.width, info.height) == (282, 640)


def test_the_pixel_limit_is_checked_from_the_heic_header() -> None:
    data = (HEIC_DIR / "selfie.heic").read_bytes()

    with pytest.raises(ImageRejected) as caught:
        inspect_image(data, ImageLimits(max_pixels=1000, max_bytes=10**7))

    assert caught.value.reason == "too_many_pixels"


def test_a_truncated_heic_is_corrupt() -> None:
    data = (HEIC_DIR / "selfie.heic").read_bytes()

    with pytest.raises(ImageRejected) as caught:
        inspect_image(data[: len(data) // 2], LIMITS)

    assert caught.value.reason == "corrupt_image"

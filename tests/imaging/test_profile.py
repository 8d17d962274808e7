"""`render_profile`: 240×240, upright, sRGB, and nothing but pixels in the output bytes.

Metadata is checked by reading the output file's own structure (JPEG segments, PNG chunks) and
with Pillow, never by trusting an option we passed.
"""

from __future__ import annotations

import functools
import io
import struct
from typing import Any

import pytest
import pyvips
from PIL import Image

from mediaplane.faces import LocalFaceEngine, local_locator
from mediaplane.imaging import ImageLimits, ImageRejected, render_counter, render_profile
from mediaplane.imaging.profile import RenderedImage, encode, face_square, to_srgb
from tests.imaging import factories

TALL_PORTRAIT = factories.FIXTURES / "faces" / "biden_1.jpg"  # 970×2204, the face in the top fifth

LIMITS = ImageLimits(max_pixels=50_000_000, max_bytes=50 * 1024 * 1024)

# Mean absolute difference (0-255 per channel) between a render of `X_n.jpg` and of `X_1.jpg`.
# Measured: 0.4-2.1 when oriented (each fixture is its own lossy JPEG, then re-encoded at Q85),
# 38-78 when the orientation is ignored. 6 sits ~3× above the worst correct render and ~6×
# below the best wrong one.
UPRIGHT_THRESHOLD = 6.0

ORIENTATION_CASES = [
    (family, orientation)
    for family in ("Landscape", "Portrait")
    for orientation in (0, 2, 3, 4, 5, 6, 7, 8)  # 0: tag holds 0 (invalid, means upright)
]

PNG_METADATA_CHUNKS = {b"eXIf", b"iCCP", b"iTXt", b"tEXt", b"zTXt", b"tIME", b"sRGB", b"gAMA"}


def png_chunk_types(data: bytes) -> list[bytes]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    types, offset = [], 8
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        types.append(data[offset + 4 : offset + 8])
        offset += 12 + length
    return types


def assert_no_metadata(rendered: RenderedImage) -> None:
    if rendered.content_type == "image/jpeg":
        assert factories.jpeg_metadata_segments(rendered.data) == []
    else:
        chunks = set(png_chunk_types(rendered.data))
        assert not chunks & PNG_METADATA_CHUNKS, f"metadata chunks: {chunks}"
    with Image.open(io.BytesIO(rendered.data)) as image:
        assert not image.getexif()
        assert not {"exif", "xmp", "icc_profile", "photoshop", "XML:com.adobe.xmp"} & set(
            image.info
        )


def pixels(data: bytes) -> pyvips.Image:
    return pyvips.Image.new_from_buffer(data, "")


def mean_abs_diff(a: pyvips.Image, b: pyvips.Image) -> float:
    assert (a.width, a.height, a.bands) == (b.width, b.height, b.bands)
    return float((a.cast("float") - b.cast("float")).abs().avg())


@functools.cache
def upright_reference(family: str) -> pyvips.Image:
    return pixels(render_profile(factories.orientation_fixture(family, 1), LIMITS).data)


@pytest.mark.parametrize(("family", "orientation"), ORIENTATION_CASES)
def test_profile_is_240_square_upright_and_stripped(family: str, orientation: int) -> None:
    source = factories.orientation_fixture(family, orientation)

    rendered = render_profile(source, LIMITS)

    assert (rendered.width, rendered.height, rendered.content_type) == (240, 240, "image/jpeg")
    out = pixels(rendered.data)
    assert (out.width, out.height, out.bands) == (240, 240, 3)
    assert mean_abs_diff(out, upright_reference(family)) < UPRIGHT_THRESHOLD
    assert_no_metadata(rendered)


@pytest.mark.parametrize(("family", "orientation"), [c for c in ORIENTATION_CASES if c[1] >= 2])
def test_a_render_that_ignores_orientation_fails_the_upright_check(
    family: str, orientation: int
) -> None:
    # The same pipeline without applying the orientation: proves the threshold above can fail.
    source = factories.orientation_fixture(family, orientation)

    unrotated = pixels(
        encode(
            to_srgb(
                pyvips.Image.thumbnail_buffer(
                    source, 240, height=240, crop=pyvips.enums.Interesting.ATTENTION, no_rotate=True
                )
            )
        ).data
    )

    assert mean_abs_diff(unrotated, upright_reference(family)) > 5 * UPRIGHT_THRESHOLD


def test_gps_xmp_iptc_and_icc_are_stripped() -> None:
    source = factories.jpeg_with_metadata()
    # The input really carries them all:
    assert {"APP1 Exif", "APP1 http://ns.adobe.com/xap/1.0/", "APP2 ICC_PROFILE"} <= set(
        factories.jpeg_metadata_segments(source)
    )
    assert "APP13 Photoshop 3.0" in factories.jpeg_metadata_segments(source)
    with Image.open(io.BytesIO(source)) as original:
        assert original.getexif().get_ifd(0x8825)  # ...and GPS

    rendered = render_profile(source, LIMITS)

    assert rendered.content_type == "image/jpeg"
    assert_no_metadata(rendered)
    assert b"Jane Doe" not in rendered.data
    assert b"http://ns.adobe.com" not in rendered.data


def test_transparent_source_gives_a_stripped_png_with_alpha() -> None:
    rendered = render_profile(factories.png_with_metadata_and_alpha(), LIMITS)

    assert rendered.content_type == "image/png"
    out = pixels(rendered.data)
    assert (out.width, out.height, out.bands) == (240, 240, 4)
    assert out(120, 120)[3] == pytest.approx(128, abs=1)
    assert_no_metadata(rendered)
    assert b"Jane Doe" not in rendered.data


def test_embedded_wide_gamut_profile_is_honoured() -> None:
    # Display P3 (200, 100, 50) is a more saturated orange than sRGB (200, 100, 50): read
    # through its profile it lands near sRGB (215, 93, 32). Ignoring the profile would keep
    # the numbers and dull the colour once the profile is stripped.
    rendered = render_profile(factories.jpeg_in_display_p3((200, 100, 50)), LIMITS)

    out = pixels(rendered.data)
    assert out.bands == 3
    assert out(120, 120) == pytest.approx([215, 93, 32], abs=3)


def test_an_unreadable_embedded_profile_is_ignored_not_fatal() -> None:
    out = io.BytesIO()
    Image.new("RGB", (300, 200), (200, 100, 50)).save(out, "JPEG", icc_profile=b"junk" * 64)

    rendered = render_profile(out.getvalue(), LIMITS)

    assert pixels(rendered.data)(120, 120) == pytest.approx([200, 100, 50], abs=3)
    assert_no_metadata(rendered)


def test_cmyk_comes_out_as_srgb() -> None:
    source = factories.cmyk_jpeg((200, 100, 50))
    assert pixels(source).bands == 4

    rendered = render_profile(source, LIMITS)

    out = pixels(rendered.data)
    assert (out.bands, out.interpretation) == (3, "srgb")
    assert out(120, 120) == pytest.approx([200, 100, 50], abs=4)
    assert_no_metadata(rendered)


def test_counts_each_render() -> None:
    before = render_counter.value

    render_profile(factories.jpeg_bytes(300, 200), LIMITS)
    render_profile(factories.png_bytes(300, 200), LIMITS)

    assert render_counter.value == before + 2


def test_small_source_is_upscaled_to_fill_the_square() -> None:
    rendered = render_profile(factories.jpeg_bytes(60, 40), LIMITS)

    assert (rendered.width, rendered.height) == (240, 240)


def test_refuses_a_decompression_bomb_before_decoding() -> None:
    with pytest.raises(ImageRejected) as caught:
        render_profile(factories.bomb_png_header_only(), LIMITS)

    assert caught.value.reason == "too_many_pixels"


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (factories.text_file(), "not_an_image"),
        (b"\xff\xd8\xff" + bytes(range(256)) * 4, "corrupt_image"),
        (b"", "empty_file"),
    ],
)
def test_refuses_bad_input_with_a_reason(data: bytes, reason: str) -> None:
    with pytest.raises(ImageRejected) as caught:
        render_profile(data, LIMITS)

    assert caught.value.reason == reason


# --- avatars keep the face ----------------------------------------------------------------------


@functools.cache
def locate() -> Any:
    return local_locator(LIMITS)


def faces_in(rendered: RenderedImage) -> int:
    return len(LocalFaceEngine(limits=LIMITS).detect(rendered.data))


def test_tall_portrait_is_cut_around_the_face() -> None:
    source = TALL_PORTRAIT.read_bytes()

    rendered = render_profile(source, LIMITS, faces=locate())

    assert (rendered.width, rendered.height) == (240, 240)
    assert faces_in(rendered) == 1
    # The control: the centre square of this portrait is a torso, no face in it.
    centre = pyvips.Image.thumbnail_buffer(
        source, 240, height=240, crop=pyvips.enums.Interesting.CENTRE
    )
    assert faces_in(encode(to_srgb(centre))) == 0


def test_face_crop_follows_the_exif_orientation() -> None:
    upright = pixels(TALL_PORTRAIT.read_bytes())
    stored = upright.rot270().copy()  # stored sideways, tagged "rotate 90° clockwise"
    stored.set_type(pyvips.GValue.gint_type, "orientation", 6)
    source = stored.jpegsave_buffer(Q=92)

    rendered = render_profile(source, LIMITS, faces=locate())
    reference = render_profile(TALL_PORTRAIT.read_bytes(), LIMITS, faces=locate())

    assert faces_in(rendered) == 1
    assert mean_abs_diff(pixels(rendered.data), pixels(reference.data)) < UPRIGHT_THRESHOLD


def test_without_a_face_the_attention_crop_is_used() -> None:
    # A plain tall picture with one busy, colourful patch near the top: attention finds it,
    # a centre crop would not.
    canvas = pyvips.Image.black(600, 1800, bands=3) + 120
    patch = pyvips.Image.gaussnoise(300, 300, sigma=80, mean=128).bandjoin_const([40, 200])
    source = canvas.insert(patch.cast("uchar"), 150, 100).cast("uchar")
    data = source.copy(interpretation="srgb").jpegsave_buffer(Q=90)

    rendered = render_profile(data, LIMITS, faces=locate())

    out = pixels(rendered.data)
    assert (out.width, out.height) == (240, 240)
    # The patch is noisy: a crop that holds it has a large spread of values.
    assert out.deviate() > 30


@pytest.mark.parametrize(
    ("face", "square"),
    [
        ((400, 200, 100, 100), (340, 129, 220, 220)),  # room all around: 2.2× the face
        ((0, 0, 100, 100), (0, 0, 220, 220)),  # at the corner: moved inside
        ((100, 100, 800, 800), (200, 0, 600, 600)),  # bigger than the picture: its short edge
    ],
)
def test_face_square(face: tuple[int, int, int, int], square: tuple[int, int, int, int]) -> None:
    assert face_square(face, 1000, 600) == square

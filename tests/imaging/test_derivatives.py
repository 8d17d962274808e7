"""`make_thumbnails` and `make_watermarked`, proven from the output bytes.

Size, orientation, colour and metadata are read back from the JPEG files that come out (their
segments, their decoded pixels, Pillow's view of them), never from the options we passed.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Callable
from pathlib import Path

import pytest
import pyvips
from PIL import Image

from mediaplane.imaging import ImageLimits, ImageRejected, make_thumbnails, make_watermarked
from mediaplane.imaging.derivatives import (
    PREVIEW_UNDERSHOOT,
    WATERMARK_QUALITY,
    Fit,
    Original,
    decode_within,
    encode_jpeg,
    opaque_srgb,
    preview_fit,
    text_mask,
    thumbnail_fit,
    watermark_font_file,
)
from mediaplane.imaging.inspect import open_checked
from tests.imaging import factories

LIMITS = ImageLimits(max_pixels=50_000_000, max_bytes=50 * 1024 * 1024)
WATERMARK_TEXT = "© Mediaplane test"

# Mean absolute difference (0-255 per channel) between a thumbnail of `X_n.jpg` and the same
# width of `X_1.jpg`. Measured at 400 and 800 px: 0.5-2.6 when oriented (each fixture is its
# own lossy JPEG, re-encoded at Q82), 41-87 with the flips and the 180° turn ignored (the
# quarter turns ignored give the wrong shape, checked first). 6 is ~2.3× above the worst
# correct thumbnail and ~7× below the best wrong one.
UPRIGHT_THRESHOLD = 6.0

# Watermarked against the same pipeline without its watermark, both Q85 JPEGs of the same
# pixels (so 0.0 where nothing was drawn). Measured with WATERMARK_TEXT on the gradient photo,
# black and white: mean 2.1-3.5 per image and 1.9-3.8 per quarter; pixels changed by more than
# 10 levels: 3.9-7.4% per quarter (glyphs and their outline: neither nothing nor a veil).
# Without the watermark step: 0.0 and 0%.
WATERMARK_MIN_MEAN_DIFF = 1.0
WATERMARK_CHANGED_FRACTION = (0.02, 0.40)

FAMILY_SHAPES = {"Landscape": (1800, 1200), "Portrait": (1200, 1800)}
ORIENTATION_CASES = [(family, n) for family in FAMILY_SHAPES for n in range(9)]
QUARTER_TURNS = {5, 6, 7, 8}


def pixels(data: bytes) -> pyvips.Image:
    return pyvips.Image.new_from_buffer(data, "")


def mean_abs_diff(a: pyvips.Image, b: pyvips.Image) -> float:
    assert (a.width, a.height, a.bands) == (b.width, b.height, b.bands)
    return float((a.cast("float") - b.cast("float")).abs().avg())


def quarters(image: pyvips.Image) -> list[pyvips.Image]:
    """Top-left, top-right, bottom-left, bottom-right."""
    w, h = image.width // 2, image.height // 2
    return [image.crop(x, y, w, h) for y in (0, h) for x in (0, w)]


def changed_fraction(a: pyvips.Image, b: pyvips.Image, *, levels: int = 10) -> float:
    """Share of pixels whose mean over the bands moved by more than `levels`."""
    moved = (a.cast("float") - b.cast("float")).abs().bandmean() > levels
    return float(moved.avg()) / 255


def jpeg_markers(data: bytes) -> set[int]:
    return {marker for marker, _ in factories.jpeg_segments(data)}


def assert_stripped_progressive_jpeg(data: bytes) -> None:
    """SOF2 (progressive), and no APP1 (EXIF, XMP), APP2 (ICC), APP13 (IPTC), other APPn, COM."""
    markers = jpeg_markers(data)
    assert 0xC2 in markers, "not a progressive JPEG (no SOF2)"
    assert not {0xC0, 0xC1} & markers, "a baseline frame header (SOF0/SOF1)"
    assert_stripped_jpeg(data)


def assert_stripped_baseline_jpeg(data: bytes) -> None:
    """SOF0 (baseline: the watermarked preview), and no metadata segment at all."""
    markers = jpeg_markers(data)
    assert 0xC0 in markers, "not a baseline JPEG (no SOF0)"
    assert 0xC2 not in markers, "a progressive frame header (SOF2)"
    assert_stripped_jpeg(data)


def assert_stripped_jpeg(data: bytes) -> None:
    assert factories.jpeg_metadata_segments(data) == []
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "JPEG"
        assert not image.getexif()
        assert not image.getexif().get_ifd(0x8825)  # GPS
        assert not {"exif", "xmp", "icc_profile", "photoshop"} & set(image.info)


@functools.cache
def reference_thumbnails(family: str) -> dict[int, pyvips.Image]:
    rendered = make_thumbnails(factories.orientation_fixture(family, 1), limits=LIMITS)
    return {width: pixels(image.data) for width, image in rendered.items()}


def plain_resize(source: bytes, max_edge: int = 2048) -> pyvips.Image:
    """The watermark pipeline without its watermark step: what the photo looks like bare."""
    fmt, header, _ = open_checked(source, LIMITS)
    image = opaque_srgb(
        decode_within(
            source, fmt, header, width=max_edge, height=max_edge, undershoot=PREVIEW_UNDERSHOOT
        )
    )
    return pixels(encode_jpeg(image, quality=WATERMARK_QUALITY, progressive=False).data)


@functools.cache
def watermarked_photo() -> tuple[pyvips.Image, pyvips.Image]:
    """(watermarked, plain) pixels of a 3000×2000 photo."""
    source = factories.jpeg_bytes(3000, 2000)
    rendered = make_watermarked(source, text=WATERMARK_TEXT, limits=LIMITS)
    return pixels(rendered.data), plain_resize(source)


# --- thumbnails ---------------------------------------------------------------------------------


def test_orientation_fixtures_are_what_these_tests_assume() -> None:
    for family, orientation in ORIENTATION_CASES:
        stored = pixels(factories.orientation_fixture(family, orientation))
        width, height = FAMILY_SHAPES[family]
        if orientation in QUARTER_TURNS:
            width, height = height, width
        assert (stored.width, stored.height) == (width, height), (family, orientation)


@pytest.mark.parametrize(("family", "orientation"), ORIENTATION_CASES)
def test_thumbnails_are_400_and_800_wide_upright_progressive_and_stripped(
    family: str, orientation: int
) -> None:
    source = factories.orientation_fixture(family, orientation)

    rendered = make_thumbnails(source, limits=LIMITS)

    assert sorted(rendered) == [400, 800]
    for width, image in rendered.items():
        out = pixels(image.data)
        assert image.content_type == "image/jpeg"
        assert (out.width, out.height, out.bands) == (image.width, image.height, 3)
        assert out.width == width
        if family == "Landscape":
            assert out.width > out.height
        else:
            assert out.height > out.width
        assert mean_abs_diff(out, reference_thumbnails(family)[width]) < UPRIGHT_THRESHOLD
        assert_stripped_progressive_jpeg(image.data)


@pytest.mark.parametrize(
    ("family", "orientation"), [(f, n) for f in FAMILY_SHAPES for n in (2, 3, 4)]
)
def test_a_thumbnail_that_ignores_orientation_fails_the_upright_check(
    family: str, orientation: int
) -> None:
    # Flips and the half turn keep the shape, so only the pixels can tell: proves the
    # threshold above can fail.
    source = factories.orientation_fixture(family, orientation)

    for width in (400, 800):
        unrotated = pyvips.Image.thumbnail_buffer(source, width, height=10_000, no_rotate=True)
        out = pixels(encode_jpeg(unrotated, quality=82).data)

        assert mean_abs_diff(out, reference_thumbnails(family)[width]) > 5 * UPRIGHT_THRESHOLD


def test_gps_exif_xmp_iptc_and_icc_are_stripped() -> None:
    source = factories.jpeg_with_metadata()
    # The input really carries them all:
    assert {"APP1 Exif", "APP1 http://ns.adobe.com/xap/1.0/", "APP2 ICC_PROFILE"} <= set(
        factories.jpeg_metadata_segments(source)
    )
    assert "APP13 Photoshop 3.0" in factories.jpeg_metadata_segments(source)
    with Image.open(io.BytesIO(source)) as original:
        assert original.getexif().get_ifd(0x8825)  # ...and GPS

    outputs = [
        *make_thumbnails(source, widths=(100, 200), limits=LIMITS).values(),
        make_watermarked(source, text=WATERMARK_TEXT, limits=LIMITS),
    ]

    for image in outputs:
        assert_stripped_jpeg(image.data)
        assert b"Jane Doe" not in image.data
        assert b"Mediaplane Test Camera" not in image.data


def test_a_narrower_image_is_never_upscaled() -> None:
    rendered = make_thumbnails(factories.jpeg_bytes(300, 200), limits=LIMITS)

    assert sorted(rendered) == [400, 800]
    for image in rendered.values():
        out = pixels(image.data)
        assert (image.width, image.height) == (out.width, out.height) == (300, 200)


def test_between_the_widths_only_the_larger_is_capped() -> None:
    rendered = make_thumbnails(factories.jpeg_bytes(600, 300), limits=LIMITS)

    assert (rendered[400].width, rendered[400].height) == (400, 200)
    assert (rendered[800].width, rendered[800].height) == (600, 300)


def test_other_widths_and_a_file_on_disk(tmp_path: Path) -> None:
    # Brackets are libvips option syntax in file names ("a.jpg[shrink=8]"); a path is literal.
    path = tmp_path / "upload[shrink=8].jpg"
    path.write_bytes(factories.orientation_fixture("Portrait", 6))

    rendered = make_thumbnails(path, widths=(120, 1000, 120), quality=60, limits=LIMITS)

    assert {w: (r.width, r.height) for w, r in rendered.items()} == {
        120: (120, 180),
        1000: (1000, 1500),
    }
    for image in rendered.values():
        assert pixels(image.data).width == image.width


def test_cmyk_comes_out_as_srgb() -> None:
    source = factories.cmyk_jpeg((200, 100, 50))
    assert pixels(source).bands == 4

    for image in make_thumbnails(source, widths=(200,), limits=LIMITS).values():
        out = pixels(image.data)
        assert (out.bands, out.interpretation) == (3, "srgb")
        assert out(100, 75) == pytest.approx([200, 100, 50], abs=4)
        assert_stripped_progressive_jpeg(image.data)


def test_embedded_display_p3_profile_is_honoured() -> None:
    # Display P3 (200, 100, 50) is a more saturated orange than sRGB (200, 100, 50): read
    # through its profile it lands near sRGB (215, 93, 32). Ignoring the profile would keep
    # the numbers and dull the colour once the profile is stripped.
    source = factories.jpeg_in_display_p3((200, 100, 50))

    thumbnail = make_thumbnails(source, widths=(200,), limits=LIMITS)[200]
    preview = make_watermarked(source, text=WATERMARK_TEXT, limits=LIMITS)

    assert pixels(thumbnail.data).bands == 3
    assert pixels(thumbnail.data)(100, 75) == pytest.approx([215, 93, 32], abs=3)
    # The top-left corner of the preview: the text rises to the right, so no glyph is there.
    assert pixels(preview.data)(2, 2) == pytest.approx([215, 93, 32], abs=3)


def test_transparency_is_flattened_onto_white() -> None:
    # Display P3 (200, 100, 50), i.e. sRGB (215, 93, 32), at alpha 128 over white: about
    # (235, 174, 144). Black (a dropped alpha band) would give about (108, 47, 16).
    rendered = make_thumbnails(
        factories.png_with_metadata_and_alpha(), widths=(200,), limits=LIMITS
    )

    out = pixels(rendered[200].data)
    assert out.bands == 3
    assert out(100, 75) == pytest.approx([235, 174, 144], abs=4)
    assert_stripped_progressive_jpeg(rendered[200].data)


# --- watermark ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        ((3000, 2000), (2048, 1365)),
        ((2000, 3000), (1365, 2048)),
        ((800, 600), (800, 600)),
        # Within PREVIEW_UNDERSHOOT of the cap, the JPEG's 1/2 DCT shrink is the whole resize.
        ((4000, 3000), (2000, 1500)),
        ((3000, 4000), (1500, 2000)),
    ],
)
def test_watermarked_long_edge_is_capped_never_upscaled(
    size: tuple[int, int], expected: tuple[int, int]
) -> None:
    rendered = make_watermarked(factories.jpeg_bytes(*size), text=WATERMARK_TEXT, limits=LIMITS)

    out = pixels(rendered.data)
    assert (rendered.width, rendered.height) == (out.width, out.height) == expected
    assert (out.bands, rendered.content_type) == (3, "image/jpeg")
    assert_stripped_baseline_jpeg(rendered.data)


def test_watermarked_is_upright() -> None:
    source = factories.orientation_fixture("Portrait", 6)  # stored 1800×1200, tag 6

    rendered = make_watermarked(source, text=WATERMARK_TEXT, max_edge=900, limits=LIMITS)

    assert (rendered.width, rendered.height) == (600, 900)
    upright = plain_resize(factories.orientation_fixture("Portrait", 1), max_edge=900)
    # The watermark moves the mean a little (4.0 measured); a picture left sideways would not
    # even have this shape (900×600).
    assert mean_abs_diff(pixels(rendered.data), upright) < 2 * UPRIGHT_THRESHOLD


def test_watermark_is_visible_in_every_quarter() -> None:
    marked, plain = watermarked_photo()

    assert mean_abs_diff(marked, plain) > WATERMARK_MIN_MEAN_DIFF
    for corner, (marked_quarter, plain_quarter) in enumerate(
        zip(quarters(marked), quarters(plain), strict=True)
    ):
        assert mean_abs_diff(marked_quarter, plain_quarter) > WATERMARK_MIN_MEAN_DIFF, corner
        # Glyphs change some pixels, not all: neither nothing nor a veil over the quarter.
        low, high = WATERMARK_CHANGED_FRACTION
        assert low < changed_fraction(marked_quarter, plain_quarter) < high, corner


@pytest.mark.parametrize("level", [0, 255])
def test_watermark_shows_on_black_and_on_white(level: int) -> None:
    # White glyphs show on black; only their dark outline can show on white.
    source = factories.flat_jpeg(level)

    marked = pixels(make_watermarked(source, text=WATERMARK_TEXT, limits=LIMITS).data)

    plain = plain_resize(source)
    for marked_quarter, plain_quarter in zip(quarters(marked), quarters(plain), strict=True):
        assert mean_abs_diff(marked_quarter, plain_quarter) > WATERMARK_MIN_MEAN_DIFF
        low, high = WATERMARK_CHANGED_FRACTION
        assert low < changed_fraction(marked_quarter, plain_quarter) < high


def test_long_text_is_scaled_down_to_stay_in_every_quarter() -> None:
    source = factories.jpeg_bytes(3000, 2000)
    text = "Mediaplane preview of project 1a2b3c4d, not for publication"

    marked = pixels(make_watermarked(source, text=text, limits=LIMITS).data)

    plain = plain_resize(source)
    # Measured 2.6-3.3% per quarter; without scaling the text down to fit, a quarter can miss
    # the text entirely.
    for marked_quarter, plain_quarter in zip(quarters(marked), quarters(plain), strict=True):
        assert changed_fraction(marked_quarter, plain_quarter) > 0.01


def test_the_watermark_is_text_drawn_with_the_shipped_font() -> None:
    # Without a usable font libvips draws one empty box per character, the same for every
    # letter; real glyphs differ: a row of W is far wider and inkier than a row of I.
    assert watermark_font_file().is_file()
    thin, wide = text_mask("IIIIIIII", 60), text_mask("WWWWWWWW", 60)

    assert wide.width > 2.5 * thin.width
    assert wide.avg() * wide.width > 2.5 * thin.avg() * thin.width


def test_text_with_markup_characters_is_drawn_as_is() -> None:
    # Image.text reads Pango markup: unescaped, "<b" would be an error or bold text.
    plain = text_mask("a <b> & c", 40)

    assert plain.width > text_mask("a b c", 40).width


def test_blank_text_or_bad_numbers_are_programming_errors() -> None:
    source = factories.jpeg_bytes(300, 200)

    with pytest.raises(ValueError, match="blank"):
        make_watermarked(source, text="  ", limits=LIMITS)
    with pytest.raises(ValueError, match="max_edge"):
        make_watermarked(source, text="x", max_edge=0, limits=LIMITS)
    with pytest.raises(ValueError, match="widths"):
        make_thumbnails(source, widths=(), limits=LIMITS)
    with pytest.raises(ValueError, match="quality"):
        make_thumbnails(source, quality=0, limits=LIMITS)


# --- refusals -----------------------------------------------------------------------------------


def thumbnails_of(data: bytes) -> object:
    return make_thumbnails(data, limits=LIMITS)


def watermarked_of(data: bytes) -> object:
    return make_watermarked(data, text=WATERMARK_TEXT, limits=LIMITS)


@pytest.mark.parametrize("render", [thumbnails_of, watermarked_of])
@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (factories.truncated_jpeg, "corrupt_image"),
        (lambda: b"\xff\xd8\xff" + bytes(range(256)) * 4, "corrupt_image"),
        (factories.truncated_png, "corrupt_image"),
        (factories.bomb_png_header_only, "too_many_pixels"),
        (factories.text_file, "not_an_image"),
    ],
    ids=["truncated-jpeg", "garbage-jpeg", "truncated-png", "png-bomb", "text"],
)
def test_refuses_bad_input_with_a_reason(
    render: Callable[[bytes], object], make: Callable[[], bytes], reason: str
) -> None:
    with pytest.raises(ImageRejected) as caught:
        render(make())

    assert caught.value.reason == reason


# --- one decode for several boxes (`Original`) ----------------------------------------------


def _shared_original(data: bytes) -> Original:
    return Original(data, LIMITS, [thumbnail_fit(), preview_fit(), Fit(1500, 1500)])


def test_one_decode_serves_the_thumbnails_the_preview_and_the_faces_frame() -> None:
    data = factories.jpeg_bytes(4000, 3000, noise=True)
    original = _shared_original(data)
    thumbs = make_thumbnails(original, limits=LIMITS)
    preview = make_watermarked(original, text="acme", limits=LIMITS)
    faces_frame = original.fitted(Fit(1500, 1500))
    assert original.decodes == 1
    assert original._frame is None  # every box served: the pixels are let go
    sizes = {w: pyvips.Image.new_from_buffer(t.data, "").width for w, t in thumbs.items()}
    assert sizes == {400: 400, 800: 800}
    marked = pyvips.Image.new_from_buffer(preview.data, "")
    # The preview is the one its own decode gives: the 1/2 DCT shrink, undershooting 2048.
    assert (marked.width, marked.height) == (2000, 1500)
    assert (faces_frame.width, faces_frame.height, faces_frame.bands) == (1500, 1125, 3)


def test_what_a_shared_decode_renders_matches_a_decode_of_its_own() -> None:
    data = factories.jpeg_bytes(4000, 3000, noise=True)
    original = _shared_original(data)
    shared_thumbs = make_thumbnails(original, limits=LIMITS)
    shared_preview = make_watermarked(original, text="acme", limits=LIMITS)
    # The widest box is decoded exactly as alone: the same bytes out.
    assert shared_preview.data == make_watermarked(data, text="acme", limits=LIMITS).data
    # The thumbnails are cut from more pixels (1/2 scale, not 1/4): the same picture (on
    # pure noise, which has no picture to keep, the two resamplings differ by ~4 levels).
    data = factories.jpeg_bytes(4000, 3000)
    shared_thumbs = make_thumbnails(_shared_original(data), limits=LIMITS)
    for width, alone in make_thumbnails(data, limits=LIMITS).items():
        a = pyvips.Image.new_from_buffer(alone.data, "")
        b = pyvips.Image.new_from_buffer(shared_thumbs[width].data, "")
        assert (a.width, a.height) == (b.width, b.height)
        assert (a - b).abs().avg() < 1


def test_a_preview_rendered_alone_streams_its_pixels_and_a_shared_one_keeps_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = factories.jpeg_bytes(4000, 3000)
    make_watermarked(data, text="acme", limits=LIMITS)  # the overlay of this size, cached
    copies: list[tuple[int, int]] = []
    real = pyvips.Image.copy_memory

    def counting(image: pyvips.Image) -> pyvips.Image:
        copies.append((image.width, image.height))
        return real(image)

    monkeypatch.setattr(pyvips.Image, "copy_memory", counting)
    alone = Original(data, LIMITS, [preview_fit()])
    make_watermarked(alone, text="acme", limits=LIMITS)
    # One box: decoded straight into the encoder, never held whole (a 2000×1500 frame).
    assert (alone.decodes, copies) == (1, [])
    shared = _shared_original(data)
    make_watermarked(shared, text="acme", limits=LIMITS)
    assert (shared.decodes, copies) == (1, [(2000, 1500)])  # kept for the other boxes


def test_a_box_wider_than_those_declared_gets_a_decode_of_its_own() -> None:
    original = Original(factories.jpeg_bytes(4000, 3000), LIMITS, [thumbnail_fit()])
    assert original.fitted(thumbnail_fit()).width == 800
    wide = original.fitted(Fit(3000, 3000))
    assert (wide.width, original.decodes) == (3000, 2)  # never enlarged from 800 px


def test_a_refused_original_is_refused_for_every_box() -> None:
    original = _shared_original(factories.truncated_jpeg())
    for render in (
        lambda: make_thumbnails(original, limits=LIMITS),
        lambda: make_watermarked(original, text="acme", limits=LIMITS),
        lambda: original.fitted(Fit(1500, 1500)),
    ):
        with pytest.raises(ImageRejected):
            render()

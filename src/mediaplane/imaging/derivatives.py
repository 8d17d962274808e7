"""Derivatives of a photo: JPEG thumbnails at fixed widths, and a watermarked preview.

Both are short pipelines of the small steps below, in this order:

    thumbnails:  check limits → reserve decode budget → shrink to the largest width
                 (shrink-on-load, upright) → opaque sRGB → keep in memory → each width from
                 that → encode (stripped)
    watermarked: check limits → reserve decode budget → fit within max_edge (shrink-on-load,
                 upright) → opaque sRGB → tiled diagonal text overlay → encode (stripped)

Both take the photo's bytes, or an `Original`: the bytes and one decode shared by several
steps (the thumbnails, the preview and the face detector's frame of one photo; see "one decode
for several boxes" below).

Outputs are progressive JPEGs with no metadata at all (no EXIF, GPS, XMP, IPTC or ICC): the
pixels are converted to sRGB first, so dropping the ICC profile changes nothing on screen.
Images are never enlarged: a width larger than the photo gives the photo's own width.

Why one decode for all widths: decoding the JPEG is most of the cost, and shrinking a few
hundred kilopixels in memory is nearly free. Measured on one core (VIPS_CONCURRENCY=1, taskset,
CPU time per photo, best of 5 rounds; libvips 8.18.7 from pyvips-binary; 400 + 800 px at Q82)
on photo-like JPEGs (gradients, a zone plate, noise): "mild" is 4 MB per 12 MP, "noisy" 9 MB:

    source                     thumbnail     one decode,    one decode,     Sharp 0.35.5
                               per width     thumbnail      JPEG shrink     clone / once
                                             then 400       (kept)
    12 MP 4000×3000 mild        92.4 ms       54.0 ms        48.2 ms         83.6 / 48.4 ms
    24 MP 6000×4000 mild       167.6 ms       91.5 ms        83.4 ms        154.0 / 82.9 ms
    12 MP noisy                185.0 ms       99.3 ms        93.7 ms        173.5 / 94.6 ms
    24 MP noisy                345.6 ms      182.5 ms       171.1 ms        335.9 / 175.7 ms

So the kept pipeline does 1.7-2.0× Sharp's photos/s with its usual `clone()` per width, and
0.99-1.03× Sharp decoding once and resizing its raw 800 px buffer to 400 (same machine, same
files, `sharp.concurrency(1)`). Deriving 400 from the in-memory 800 with `thumbnail_image` or
`resize` costs the same (1.5 ms); `thumbnail_image` has the never-enlarge rule built in.

Watermark, 2048 px preview (2048×1536 from 12 MP, 2048×1365 from 24 MP), same conditions:
building the overlay (text, outline, rotation, brick block: ~10 ms) and blending it over the
image (~13 ms) cost 23-25 ms in all, against 65 / 94 / 114 / 180 ms for the decode and
resize before it and 29-46 ms for the encode after; whole call 134 / 156 / 185 / 240 ms.
"""

from __future__ import annotations

import functools
import html
import importlib.resources
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pyvips

from mediaplane.imaging.budget import decoding
from mediaplane.imaging.formats import ImageFormat
from mediaplane.imaging.header import upright_size
from mediaplane.imaging.inspect import (
    VERIFY_LOADER_OPTIONS,
    image_source,
    libvips_errors,
    open_checked,
)
from mediaplane.imaging.limits import ImageLimits
from mediaplane.imaging.profile import RenderedImage, to_srgb

THUMBNAIL_WIDTHS = (400, 800)
THUMBNAIL_QUALITY = 82
WATERMARK_MAX_EDGE = 2048
WATERMARK_QUALITY = 85
# The preview may come out up to 10% under WATERMARK_MAX_EDGE when a JPEG's DCT shrink gets
# there: a 4000×3000 photo decoded at 1/2 gives 2000×1500 with no resize at all, where an
# exact 2048 needs a full-size decode first (84 against 51 ms on one core, measured).
PREVIEW_UNDERSHOOT = 0.1

# The watermark's look. White glyphs at 35% show on dark photos; a soft dark outline at 30%
# around them shows on light ones (white on white alone would vanish).
WATERMARK_FONT = "DejaVu Sans Bold"
WATERMARK_FONT_FILE = "DejaVuSans-Bold.ttf"
WATERMARK_OPACITY = 0.35
WATERMARK_OUTLINE_OPACITY = 0.30
WATERMARK_ANGLE = 30  # degrees, the text rising to the right
WATERMARK_SIZE_DIVISOR = 18  # text height ≈ the short edge / 18

# libvips' largest coordinate: as a thumbnail height it means "no height limit", so the width
# alone decides (with no height given, libvips would fit a width × width square instead).
_UNBOUNDED = 10_000_000


def make_thumbnails(
    source: bytes | Path | Original,
    *,
    widths: Sequence[int] = THUMBNAIL_WIDTHS,
    quality: int = THUMBNAIL_QUALITY,
    limits: ImageLimits,
) -> dict[int, RenderedImage]:
    """One progressive, metadata-free sRGB JPEG per requested width (upright, never enlarged),
    keyed by that width; raises `ImageRejected` for input that is not an acceptable image."""
    wanted = _checked_widths(widths)
    _check_quality(quality)
    fit = thumbnail_fit(wanted)
    original = source if isinstance(source, Original) else Original(source, limits, [fit])
    # Decoded once, at the largest width; every width is then cut from these pixels.
    largest = original.fitted(fit)
    with libvips_errors():
        return {width: encode_jpeg(narrow(largest, width), quality=quality) for width in wanted}


def thumbnail_fit(widths: Sequence[int] = THUMBNAIL_WIDTHS) -> Fit:
    """The box the thumbnails are cut from: the largest width, any height."""
    return Fit(max(widths), _UNBOUNDED)


def make_watermarked(
    source: bytes | Path | Original,
    *,
    text: str,
    max_edge: int = WATERMARK_MAX_EDGE,
    quality: int = WATERMARK_QUALITY,
    limits: ImageLimits,
) -> RenderedImage:
    """The photo upright, its long edge at most `max_edge`, with `text` tiled diagonally over
    all of it (any quarter of the result still shows the whole text); a metadata-free JPEG.

    Raises `ImageRejected` for input that is not an acceptable image, `ValueError` for blank
    text or a non-positive `max_edge`.
    """
    if not text.strip():
        raise ValueError("make_watermarked: text must not be blank")
    if max_edge <= 0:
        raise ValueError(f"make_watermarked: max_edge must be positive, not {max_edge}")
    _check_quality(quality)
    fit = preview_fit(max_edge)
    original = source if isinstance(source, Original) else Original(source, limits, [fit])
    return original.render(
        fit, lambda image: encode_jpeg(watermark(image, text), quality=quality, progressive=False)
    )


def preview_fit(max_edge: int = WATERMARK_MAX_EDGE) -> Fit:
    """The watermarked preview's box."""
    return Fit(max_edge, max_edge, PREVIEW_UNDERSHOOT)


# --- resize -------------------------------------------------------------------------------------


def decode_within(
    source: bytes | Path,
    fmt: ImageFormat,
    header: pyvips.Image,
    *,
    width: int,
    height: int,
    undershoot: float = 0.0,
) -> pyvips.Image:
    """The image upright and shrunk to fit `width`×`height` (never enlarged), decoding as few
    pixels as the format allows. `header` is the lazily opened image from `open_checked`.

    The EXIF orientation is applied by `thumbnail_*`, which swaps its target box to match, so
    `width` is the width of the upright picture. `fail_on=truncated` makes an interrupted
    upload an error instead of a picture with a grey lower half.

    JPEG is loaded with the largest DCT shrink (1/2, 1/4, 1/8) that stays at or above the
    target, then resized with Lanczos, as Sharp does. `thumbnail_source` stops one step short,
    keeping a factor of 2 for the final resize (a little less aliasing on fine patterns, seen
    only on a zone plate): measured, that made 400 + 800 px thumbnails of a 12 MP photo 12%
    slower (54.0 against 48.2 ms) and the 2048 px preview of a 24 MP one decode all of its
    pixels instead of a quarter (121.6 against 93.6 ms). Other formats go through
    `thumbnail_source`, which knows their own shrink-on-load (WebP) and premultiplies alpha
    while resizing.

    `undershoot` (0 to <1) lets a JPEG come out up to that fraction smaller than the box when a
    larger DCT shrink gets there: the shrink itself is then the whole resize (see
    `PREVIEW_UNDERSHOOT`).

    TRAP: the result is lazy and streams from `source`: read its pixels once, or
    `copy_memory()` it first, and keep `source` (bytes) referenced until then, as the libvips
    source reads the Python buffer without holding on to it.
    """
    if fmt is ImageFormat.JPEG:
        shrink = _jpeg_shrink(header, width, height, undershoot)
        image = pyvips.Image.new_from_source(
            image_source(source), VERIFY_LOADER_OPTIONS, access="sequential", shrink=shrink
        )
        return image.thumbnail_image(width, height=height, size=pyvips.enums.Size.DOWN)
    return pyvips.Image.thumbnail_source(
        image_source(source),
        width,
        height=height,
        size=pyvips.enums.Size.DOWN,
        option_string=VERIFY_LOADER_OPTIONS,
    )


# --- one decode for several boxes ------------------------------------------------------------
#
# A photo's steps each want the picture upright and shrunk to a box of their own: the
# thumbnails 800 px wide, the watermarked preview within 2048 px, the face detector within
# 1500 px. Each used to decode the original by itself, and decoding is the part no box makes
# cheaper: libjpeg reads every entropy-coded byte whatever the shrink (56 ms of a 6.5 MB 12 MP
# JPEG on one core, measured, against 67 ms for the whole decode at 1/2 scale). Three steps paid
# it three times.
#
# `Original` holds the bytes and, on the first `fitted` call, decodes them once for the widest
# of the boxes declared (`fits`), exactly as that box alone is decoded (`decode_within`); every
# other box is cut from those pixels in memory. The frame is dropped once every declared box
# has been served, so it lives no longer than the steps that share it. Measured on one core
# (bench/pipeline.py's 12 MP scene, CPU per photo): thumbnails 74 ms, watermark 85 ms and the
# face detector's decode 73 ms, each decoding alone; one decode at 1/2 scale 67 ms, then the
# thumbnails 15 ms, the watermark 18 ms, the faces' 1500 px frame 11 ms.


_T = TypeVar("_T")


@dataclass(frozen=True)
class Fit:
    """A box the upright picture is shrunk to fit, never enlarged. `undershoot` as in
    `decode_within`: a JPEG may come out that fraction smaller when a DCT shrink gets there."""

    width: int
    height: int
    undershoot: float = 0.0

    def scale(self, size: tuple[int, int]) -> float:
        """The scale this box gives a picture of `size` (width, height)."""
        return min(1.0, self.width / size[0], self.height / size[1])


class Original:
    """A photo's bytes (read on first use) and its pixels, decoded at most once for the
    declared `fits` (see above). Not shared between threads."""

    def __init__(
        self,
        source: bytes | Path | Callable[[], bytes],
        limits: ImageLimits,
        fits: Sequence[Fit] = (),
    ) -> None:
        self._load = source if callable(source) else None
        self._data = None if callable(source) else source
        self.limits = limits
        self._waiting = list(fits)  # boxes declared and not served yet
        self._opened: tuple[ImageFormat, pyvips.Image] | None = None
        self._frame: pyvips.Image | None = None
        self._frame_scale = 0.0
        self.decodes = 0  # how many times the pixels were decoded (for tests and benches)

    @property
    def data(self) -> bytes | Path:
        """The encoded photo, read from its source once."""
        if self._data is None:
            assert self._load is not None
            self._data = self._load()
        return self._data

    def as_bytes(self) -> bytes:
        data = self.data
        return data.read_bytes() if isinstance(data, Path) else data

    def opened(self) -> tuple[ImageFormat, pyvips.Image]:
        """Format and lazily opened header, after the checks of `open_checked` (size, format,
        pixels): raises `ImageRejected` before anything is decoded."""
        if self._opened is None:
            fmt, header, _ = open_checked(self.data, self.limits)
            self._opened = (fmt, header)
        return self._opened

    def upright_size(self) -> tuple[int, int]:
        return upright_size(self.opened()[1])

    def fitted(self, fit: Fit) -> pyvips.Image:
        """The picture upright, 8-bit opaque sRGB, in memory, shrunk to fit `fit`: from the one
        decode for the widest declared box, or a decode of its own if `fit` is wider."""
        fmt, header = self.opened()
        size = upright_size(header)
        if fit not in self._waiting:
            self._waiting.append(fit)
        if self._frame is None or fit.scale(size) > self._frame_scale:
            widest = max(self._waiting, key=lambda f: (f.scale(size), -f.undershoot))
            self._frame = self._decode(fmt, header, widest, pyvips.Image.copy_memory)
            self._frame_scale = widest.scale(size)
        frame = self._frame
        self._waiting.remove(fit)
        if not self._waiting:
            self._frame = None  # every box served: the pixels go with the last one
        if fit.scale(size) >= self._frame_scale:
            return frame
        with libvips_errors():
            shrunk = frame.thumbnail_image(fit.width, height=fit.height, size=pyvips.Size.DOWN)
            return shrunk.copy_memory()

    def render(self, fit: Fit, finish: Callable[[pyvips.Image], _T]) -> _T:
        """`finish` applied to the picture fitted to `fit`. When `fit` is the only box this
        Original ever serves, the pixels stream from the decoder through `finish` (which must
        read them once: an encode), under the decode budget, and are never held whole in
        memory: copying a frame only pays when several boxes share it (a 2000×1500 preview of a
        12 MP photo: 4 ms of 71, measured). Otherwise as `fitted`."""
        if self._frame is not None or self._waiting not in ([], [fit]):
            image = self.fitted(fit)
            with libvips_errors():
                return finish(image)
        self._waiting = []
        return self._decode(*self.opened(), fit, finish)

    def _decode(
        self,
        fmt: ImageFormat,
        header: pyvips.Image,
        fit: Fit,
        finish: Callable[[pyvips.Image], _T],
    ) -> _T:
        self.decodes += 1
        data = self.data  # referenced until `finish` has read the pixels (decode_within's TRAP)
        wait = self.limits.decode_wait_seconds
        with decoding(fmt, header, wait_seconds=wait), libvips_errors():
            image = decode_within(
                data, fmt, header, width=fit.width, height=fit.height, undershoot=fit.undershoot
            )
            return finish(opaque_srgb(image))


def _jpeg_shrink(header: pyvips.Image, width: int, height: int, undershoot: float = 0.0) -> int:
    """The largest libjpeg shrink factor whose output still covers the target size, or covers
    at least `1 - undershoot` of it."""
    upright_width, upright_height = upright_size(header)
    scale = min(1.0, width / upright_width, height / upright_height)
    return next(factor for factor in (8, 4, 2, 1) if factor * scale * (1 - undershoot) <= 1)


def narrow(image: pyvips.Image, width: int) -> pyvips.Image:
    """`image` shrunk to `width` (height by aspect ratio), or as it is if not wider."""
    if image.width <= width:
        return image
    return image.thumbnail_image(width, height=_UNBOUNDED, size=pyvips.enums.Size.DOWN)


def opaque_srgb(image: pyvips.Image) -> pyvips.Image:
    """8-bit sRGB without alpha: transparency (PNG, WebP) is flattened onto white, as JPEG has
    no alpha channel and a transparent area would otherwise come out black."""
    image = to_srgb(image)
    if image.hasalpha():
        image = image.flatten(background=[255, 255, 255])
    return image.cast(pyvips.enums.BandFormat.UCHAR)


# --- watermark ----------------------------------------------------------------------------------


def watermark(image: pyvips.Image, text: str) -> pyvips.Image:
    """`image` (opaque sRGB) with `text` blended over it in a diagonal tiling."""
    overlay = watermark_overlay(text, image.width, image.height)
    shade, alpha = overlay[0], overlay[1]
    # One blended pass, alpha/255 × shade + (1 − alpha/255) × image, the grey shade applied
    # to all three bands. Twice as fast as `composite2` over an RGBA layer (13 against 27 ms
    # for 2048×1536, measured), which works in float and adds an alpha band to drop after.
    return alpha.ifthenelse(shade, image, blend=True)


@functools.lru_cache(maxsize=8)
def watermark_overlay(text: str, width: int, height: int) -> pyvips.Image:
    """A `width`×`height` layer of the text tiled diagonally: band 0 the grey level (255 in
    the glyphs, 0 in their outline), band 1 the opacity.

    The repeating block holds two rows of the rotated text, the second shifted by half a tile
    (a brick pattern, so rows do not line up into stripes).

    Rendered once per text and size and kept in memory (a few MB each; photos from one camera
    share a size): building it cost 16 ms per photo, as much as the blend itself.
    """
    block = watermark_block(text, width, height)
    across = math.ceil(width / block.width)
    down = math.ceil(height / block.height)
    return block.replicate(across, down).crop(0, 0, width, height).copy_memory()


def watermark_block(text: str, width: int, height: int) -> pyvips.Image:
    """The repeating unit of the overlay for a `width`×`height` image, in memory."""
    tile = watermark_tile(text, watermark_text_size(width, height), (width // 2, height // 2))
    row = tile.replicate(2, 1)
    shifted_row = tile.replicate(3, 1).crop(tile.width // 2, 0, row.width, row.height)
    # In memory (at most the image's size, 2 bands): a lazy block would be recomputed for
    # every copy `replicate` makes of it.
    return row.join(shifted_row, pyvips.enums.Direction.VERTICAL).copy_memory()


def watermark_text_size(width: int, height: int) -> int:
    """Text size in pixels for an image of `width`×`height`: about 1/18 of the short edge."""
    return max(6, round(min(width, height) / WATERMARK_SIZE_DIVISOR))


def watermark_tile(text: str, size: int, fit_in: tuple[int, int]) -> pyvips.Image:
    """The text once, rotated, as 2 uchar bands: grey level and opacity; no larger than
    `fit_in` (the text is scaled down if needed).

    White glyphs at `WATERMARK_OPACITY`, and around them (never under them) a soft black
    outline at `WATERMARK_OUTLINE_OPACITY`. The rotation fills the corners with 0 in both
    bands: transparent, and black like the outline, so interpolated edges blend into the
    outline instead of showing a fringe.

    Why `fit_in` is a quarter of the image: any tile-sized window of a tiling holds every
    pixel of the tile once (in pieces), so a crop of any quarter still holds the whole text.
    """
    glyphs = text_mask(text, size)
    margin = size // 2
    glyphs = glyphs.embed(margin, margin, glyphs.width + 2 * margin, glyphs.height + 2 * margin)
    # Scaled before rotating, on one small band: the rotated box is known in advance.
    box_width, box_height = _rotated_box(glyphs)
    scale = min(1.0, fit_in[0] / box_width, fit_in[1] / box_height)
    if scale < 1.0:
        glyphs = glyphs.resize(scale)
        size = max(1, round(size * scale))
    # A blurred, amplified copy of the glyphs: an outline a few pixels wide (~size/16).
    outline = glyphs.gaussblur(max(0.8, size / 24)).linear(4, 0).cast("uchar")
    # Opacity in 0-255: the fill inside the glyphs, the outline only where they are not.
    inside = glyphs / 255
    opacity = inside * (255 * WATERMARK_OPACITY) + (1 - inside) * (
        outline * WATERMARK_OUTLINE_OPACITY
    )
    tile = glyphs.bandjoin(opacity.cast(pyvips.enums.BandFormat.UCHAR))
    return tile.rotate(-WATERMARK_ANGLE).copy_memory()


def _rotated_box(image: pyvips.Image) -> tuple[float, float]:
    """Width and height of the box around `image` once rotated by `WATERMARK_ANGLE`, plus
    the pixel libvips' `rotate` adds on each side."""
    angle = math.radians(WATERMARK_ANGLE)
    cos, sin = math.cos(angle), math.sin(angle)
    return (
        image.width * cos + image.height * sin + 2,
        image.width * sin + image.height * cos + 2,
    )


def text_mask(text: str, size: int) -> pyvips.Image:
    """`text` rendered as a 1-band uchar coverage mask (255 = inside a glyph), `size` px high.

    TRAP: without `fontfile` libvips asks fontconfig, and on a machine with no fonts it draws
    empty boxes without any error. The font ships with the package, so it renders everywhere.
    `Image.text` reads Pango markup: the text is escaped so "<", ">" and "&" are just text.
    """
    return pyvips.Image.text(
        html.escape(text, quote=False),
        font=f"{WATERMARK_FONT} {size}",
        fontfile=str(watermark_font_file()),
        dpi=72,  # at 72 dpi a point is a pixel, so `size` is in pixels
    )


def watermark_font_file() -> Path:
    """The shipped DejaVu Sans Bold (`src/mediaplane/assets`, installed as package data)."""
    font = importlib.resources.files("mediaplane") / "assets" / WATERMARK_FONT_FILE
    # libvips needs a real path; the package is installed as files, never zipped.
    return Path(str(font))


# --- encode -------------------------------------------------------------------------------------


def encode_jpeg(image: pyvips.Image, *, quality: int, progressive: bool = True) -> RenderedImage:
    """JPEG with EVERY metadata block stripped: EXIF (GPS, camera serial), XMP, IPTC and ICC.
    libvips copies all of them to the output unless told not to.

    Progressive by default because thumbnails are served to browsers, which show a coarse
    whole picture early (optimised Huffman tables come with it). The watermarked preview is
    baseline: progressive encoding costs 6-7× a baseline one in this libjpeg build (68 against
    11 ms for 2000×1500, measured), more than the decode, for a preview a viewer opens one at
    a time.
    """
    data = image.jpegsave_buffer(
        Q=quality,
        interlace=progressive,
        optimize_coding=progressive,
        keep=pyvips.enums.ForeignKeep.NONE,
    )
    return RenderedImage(data, "image/jpeg", image.width, image.height)


def _checked_widths(widths: Sequence[int]) -> list[int]:
    wanted = sorted(set(widths))
    if not wanted or wanted[0] <= 0:
        raise ValueError(f"make_thumbnails: widths must be positive, not {list(widths)}")
    return wanted


def _check_quality(quality: int) -> None:
    if not 1 <= quality <= 100:
        raise ValueError(f"JPEG quality must be 1-100, not {quality}")

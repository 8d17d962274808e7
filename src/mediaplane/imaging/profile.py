"""The Authgear `profile` variant: a 240×240 avatar, upright, sRGB, with no metadata left.

One short pipeline of small steps, each a function below:

    check limits → cover crop (shrink-on-load) → orient → sRGB → encode (metadata stripped)

JPEG out, or PNG when the source has transparency (JPEG has no alpha channel).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import pyvips

from mediaplane.imaging.inspect import image_source, libvips_errors, open_checked
from mediaplane.imaging.limits import ImageLimits

PROFILE_SIZE = 240
JPEG_QUALITY = 85


@dataclass(frozen=True)
class RenderedImage:
    data: bytes
    content_type: str
    width: int
    height: int


class RenderCounter:
    """How many renders were started, thread-safe; proves in tests that a cache hit did no work."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._value = 0

    @property
    def value(self) -> int:
        return self._value

    def increment(self) -> None:
        with self._lock:
            self._value += 1


render_counter = RenderCounter()


def render_profile(source: bytes, limits: ImageLimits) -> RenderedImage:
    """The `profile` rendition of an image's bytes; raises `ImageRejected` for bad input."""
    render_counter.increment()
    open_checked(source, limits)
    with libvips_errors():
        image = cover_crop(source, PROFILE_SIZE)
        image = orient(image)
        image = to_srgb(image)
        return encode(image)


def cover_crop(source: bytes, size: int) -> pyvips.Image:
    """A `size`×`size` square filling the frame, cut from the centre of the stored pixels.

    `thumbnail_source` shrinks while it decodes (a JPEG at 1/2, 1/4 or 1/8 scale), so a 12 MP
    photo never sits in memory at full size. Orientation is left to `orient` (no_rotate): a
    centred square of a rotated or mirrored picture is the rotated centred square, so rotating
    after the crop gives the same pixels and turns only 240×240 of them.

    TRAP: the result is lazy and streams from `source` as it is consumed: encode it once (or
    `copy_memory()` it first if it must be read twice).
    """
    return pyvips.Image.thumbnail_source(
        image_source(source),
        size,
        height=size,
        crop=pyvips.enums.Interesting.CENTRE,
        no_rotate=True,
    )


def orient(image: pyvips.Image) -> pyvips.Image:
    """Apply the EXIF orientation tag (phones store pixels sideways and set a tag) and drop it."""
    return image.autorot()


def to_srgb(image: pyvips.Image) -> pyvips.Image:
    """8-bit sRGB, keeping any alpha; an embedded ICC profile says what the pixels mean.

    Without this, an Adobe RGB or Display P3 photo looks dull once its profile is stripped, and
    a CMYK or 16-bit one cannot be saved as a web image at all. An unreadable embedded profile
    is ignored by libvips (sRGB assumed) rather than failing the render.
    """
    if image.get_typeof("icc-profile-data"):
        if image.format == "uchar" and _is_srgb_profile(image.get("icc-profile-data")):
            # Most camera and phone JPEGs embed sRGB itself: converting sRGB to sRGB gives the
            # same pixels and cost 4–13 ms per photo (bench/derivatives.py).
            return image
        return image.icc_transform("srgb", embedded=True)
    if image.interpretation != pyvips.enums.Interpretation.SRGB:
        return image.colourspace(pyvips.enums.Interpretation.SRGB)
    return image


def _is_srgb_profile(profile: bytes) -> bool:
    # An RGB display profile (header bytes 12–20) whose description names sRGB (IEC 61966-2.1
    # and its v4 variants). Anything else (Display P3, Adobe RGB, CMYK) is converted.
    return profile[12:20] == b"mntrRGB " and b"sRGB" in profile


def encode(image: pyvips.Image) -> RenderedImage:
    """JPEG (or PNG with alpha) with EVERY metadata block stripped: EXIF (GPS, camera serial),
    XMP, IPTC and ICC. libvips copies all of them to the output unless told not to."""
    keep = pyvips.enums.ForeignKeep.NONE
    if image.hasalpha():
        data = image.pngsave_buffer(keep=keep, compression=6)
        content_type = "image/png"
    else:
        data = image.jpegsave_buffer(keep=keep, Q=JPEG_QUALITY, optimize_coding=True)
        content_type = "image/jpeg"
    return RenderedImage(data, content_type, image.width, image.height)

"""The Authgear `profile` variant: a 240×240 avatar, upright, sRGB, with no metadata left.

One short pipeline of small steps, each a function below:

    check limits → find the largest face → reserve decode budget → square around it, or
    libvips' attention crop (shrink-on-load, upright) → sRGB → encode (metadata stripped)

The square keeps the face: a centre crop of a tall portrait is a torso without a head. Faces
come from a `FaceLocator` the caller gives (the Images server passes the local dlib detector:
boxes only, no descriptor, nothing stored; its own decode reserves its own budget); without
one, or when it finds no face, libvips' attention crop picks the busiest, most colourful,
skin-toned part of the picture.

JPEG out, or PNG when the source has transparency (JPEG has no alpha channel).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pyvips

from mediaplane.imaging.budget import decoding
from mediaplane.imaging.header import upright_size
from mediaplane.imaging.inspect import image_source, libvips_errors, open_checked
from mediaplane.imaging.limits import ImageLimits

PROFILE_SIZE = 240
JPEG_QUALITY = 85
# The square around a face: its side is FACE_SPAN × the face box's width (dlib's box runs from
# the eyebrows to the chin, so 2.2× shows the hair, the ears and some neck), never more than
# the picture's short edge; the face box's centre sits HEADROOM of the side below the top
# (0.55: a little more room above the face than below, where the forehead and hair are).
FACE_SPAN = 2.2
HEADROOM = 0.55

# (left, top, width, height) in pixels of the upright image.
Region = tuple[int, int, int, int]
# Finds the faces of an image's bytes: boxes in pixels of the upright image, any order.
FaceLocator = Callable[[bytes], Sequence[Region]]


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


def render_profile(
    source: bytes, limits: ImageLimits, *, faces: FaceLocator | None = None
) -> RenderedImage:
    """The `profile` rendition of an image's bytes; raises `ImageRejected` for bad input."""
    render_counter.increment()
    fmt, header, _ = open_checked(source, limits)
    # Before this decode's reservation: the locator's own decode reserves separately.
    found = list(faces(source)) if faces is not None else []
    with decoding(fmt, header, wait_seconds=limits.decode_wait_seconds), libvips_errors():
        if found:
            largest = max(found, key=lambda r: r[2] * r[3])
            image = face_crop(source, upright_size(header), largest, PROFILE_SIZE)
        else:
            image = attention_crop(source, PROFILE_SIZE)
        image = to_srgb(image)
        return encode(image)


def attention_crop(source: bytes, size: int) -> pyvips.Image:
    """A `size`×`size` square filling the frame where libvips' `attention` strategy looks
    (edges, saturation, skin tones), on the upright picture.

    `thumbnail_source` shrinks while it decodes (a JPEG at 1/2, 1/4 or 1/8 scale), so a 12 MP
    photo never sits in memory at full size, and applies the EXIF orientation first: the
    attention crop must see the picture as people do. `image_source` gives libvips what it can
    read (a HEIC is decoded by libheif first, see imaging/heif.py).

    TRAP: the result is lazy and streams from `source` as it is consumed: encode it once (or
    `copy_memory()` it first if it must be read twice).
    """
    return pyvips.Image.thumbnail_source(
        image_source(source), size, height=size, crop=pyvips.enums.Interesting.ATTENTION
    )


def face_square(face: Region, width: int, height: int) -> Region:
    """The square (in upright pixels) the avatar is cut from: FACE_SPAN × the face, the face
    centred across and HEADROOM down, moved inside the picture where it would cross an edge."""
    left, top, face_w, face_h = face
    side = max(1, min(width, height, round(FACE_SPAN * max(face_w, face_h))))
    x = round(left + face_w / 2 - side / 2)
    y = round(top + face_h / 2 - HEADROOM * side)
    x = min(max(0, x), width - side)
    y = min(max(0, y), height - side)
    return (x, y, side, side)


def face_crop(source: bytes, upright: tuple[int, int], face: Region, size: int) -> pyvips.Image:
    """A `size`×`size` avatar cut around `face`, in pixels of the `upright` original.

    Decoded upright and shrunk on load to the smallest size that still gives the square at
    least `size` pixels, so a 24 MP portrait is not decoded whole.
    """
    width, height = upright
    x, y, side, _ = face_square(face, width, height)
    # Shrink-on-load: the whole picture at a scale where the square is >= size pixels.
    scale = min(1.0, size / side)
    target = max(1, math.ceil(max(width, height) * scale))
    image = pyvips.Image.thumbnail_source(
        image_source(source), target, height=target, size=pyvips.enums.Size.DOWN
    )
    sx, sy = image.width / width, image.height / height
    cx, cy = round(x * sx), round(y * sy)
    cside = max(1, min(round(side * sx), image.width - cx, image.height - cy))
    square = image.crop(cx, cy, cside, cside)
    return square.thumbnail_image(size, height=size, crop=pyvips.enums.Interesting.CENTRE)


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

"""An operator's profile picture as it is kept and served: upright, sRGB, long edge at most
`PROFILE_PICTURE_MAX_EDGE`, a JPEG with no metadata (no EXIF, GPS, XMP, IPTC or ICC).

What an operator uploads is shown to other people; the phone's GPS position and serial number
must not travel with it, and a 40 MP original is no avatar.
"""

from __future__ import annotations

from pathlib import Path

from mediaplane.imaging.derivatives import decode_within, encode_jpeg, opaque_srgb
from mediaplane.imaging.inspect import libvips_errors, open_checked
from mediaplane.imaging.limits import ImageLimits
from mediaplane.imaging.profile import RenderedImage

PROFILE_PICTURE_MAX_EDGE = 1024
PROFILE_PICTURE_QUALITY = 85


def normalise_picture(
    source: bytes | Path, limits: ImageLimits, *, max_edge: int = PROFILE_PICTURE_MAX_EDGE
) -> RenderedImage:
    """The picture upright, fitted in `max_edge`² (never enlarged), as a stripped JPEG;
    raises `ImageRejected` for input that is not an acceptable image."""
    fmt, header, _ = open_checked(source, limits)
    with libvips_errors():
        image = decode_within(source, fmt, header, width=max_edge, height=max_edge)
        image = opaque_srgb(image)
        return encode_jpeg(image, quality=PROFILE_PICTURE_QUALITY, progressive=False)

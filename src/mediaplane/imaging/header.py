"""Image facts from the header alone (no pixel decode)."""

from __future__ import annotations

import pyvips

from mediaplane.imaging import heif
from mediaplane.imaging.formats import SNIFF_BYTES, ImageFormat, sniff_format

# EXIF orientations 5–8 turn the picture a quarter: its upright width is its stored height.
_QUARTER_TURNS = {5, 6, 7, 8}


def upright_size(header: pyvips.Image) -> tuple[int, int]:
    """(width, height) of an opened image as displayed, EXIF orientation applied."""
    orientation = header.get("orientation") if header.get_typeof("orientation") else 1
    if orientation in _QUARTER_TURNS:
        return header.height, header.width
    return header.width, header.height


def upright_size_of(data: bytes) -> tuple[int, int]:
    """`upright_size` of encoded bytes (reads the header only)."""
    if sniff_format(data[:SNIFF_BYTES]) is ImageFormat.HEIC:
        return heif.header_size(data)  # libheif applies irot/imir: already upright
    return upright_size(pyvips.Image.new_from_buffer(data, "", access="sequential"))

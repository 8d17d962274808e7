"""Can an image's compressed data cover the size its header declares? Checked before decoding.

A 900-byte JPEG whose frame header is patched to say 7000×7000 opens as a 49 MP image; libjpeg
then invents the pixels its data lacks (warning "premature end of data segment", which
`fail_on=truncated` does not catch, as the file does end with its EOI marker) and a 7000×7000
grey picture is accepted, stored and decoded at full cost on every later request.

The floors below are what the format itself cannot go under, so a legitimate image, however
flat, always passes (a one-colour 4000×3000 JPEG is 141 KB against a 23 KB floor; as a PNG,
41 KB against 35 KB):

- Huffman-coded JPEG: every 8×8 block of the full-resolution component starts with a DC
  symbol, and a Huffman code is at least 1 bit: at least width × height / 512 bytes of data.
  (Arithmetic-coded JPEGs can go under a bit per block: not checked.)
- PNG: deflate compresses at most 1032:1, so the IDAT data is at least the raw pixel bytes
  / 1032.
- WebP (a range coder) and GIF have no useful floor: their decoders refuse a short frame
  themselves (measured: libwebp "unable to read pixels").

Only the leading bytes are parsed (up to the first scan or IDAT chunk), so the Media API can
check an arrival from a prefix of the object; everything after the headers counts as data,
which can only make the check more lenient.
"""

from __future__ import annotations

import math
import struct

from mediaplane.imaging.errors import image_truncated
from mediaplane.imaging.formats import ImageFormat, sniff_format

# Leading bytes parsed: the headers before the first scan (EXIF with its thumbnail, ICC, XMP)
# fit in this in practice; when they do not, the check uses what it read and stays sound.
COVER_PREFIX_BYTES = 256 * 1024

DEFLATE_MAX_RATIO = 1032
_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
# SOF markers of Huffman-coded frames (baseline, extended, progressive, lossless); 0xC9-0xCB
# and 0xCD-0xCF are arithmetic-coded; 0xC4 (DHT), 0xC8 (JPG) and 0xCC (DAC) are not frames.
_HUFFMAN_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7}
_ARITHMETIC_SOF = {0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_STANDALONE = {0x01, 0xD0, 0xD1, 0xD2, 0xD3, 0xD4, 0xD5, 0xD6, 0xD7, 0xD8}


def check_data_covers(prefix: bytes, size_bytes: int) -> None:
    """Refuse (`image_truncated`) an image whose data is too small for its declared size.

    `prefix` is the file's leading bytes (the whole file, or at least `COVER_PREFIX_BYTES`),
    `size_bytes` its full size. Formats without a floor, and headers not found in `prefix`,
    pass: the decoders' own checks apply to them.
    """
    fmt = sniff_format(prefix)
    if fmt is ImageFormat.JPEG:
        found = _jpeg_floor(prefix)
    elif fmt is ImageFormat.PNG:
        found = _png_floor(prefix)
    else:
        return
    if found is None:
        return
    width, height, header_bytes, min_data_bytes = found
    data_bytes = size_bytes - header_bytes
    if data_bytes < min_data_bytes:
        raise image_truncated(width, height, data_bytes, min_data_bytes)


def _jpeg_floor(data: bytes) -> tuple[int, int, int, int] | None:
    """(width, height, bytes before the first scan, least data bytes), or None if unknown."""
    frame: tuple[int, int] | None = None
    at = 2
    while at + 4 <= len(data):
        if data[at] != 0xFF:
            return None  # not a well-formed marker stream: leave it to the decoder
        marker = data[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        if marker in _STANDALONE:
            at += 2
            continue
        if marker == 0xDA:  # start of scan: entropy-coded data from here
            break
        length = struct.unpack(">H", data[at + 2 : at + 4])[0]
        if marker in _ARITHMETIC_SOF:
            return None
        if marker in _HUFFMAN_SOF and at + 9 <= len(data):
            height, width = struct.unpack(">HH", data[at + 5 : at + 9])
            frame = (width, height)
        at += 2 + length
    if frame is None or 0 in frame:
        return None  # no frame header read (or a DNL height): nothing to compare against
    width, height = frame
    blocks = math.ceil(width / 8) * math.ceil(height / 8)
    # `at` is where the scan starts, or where the prefix ran out (the scan is further on).
    return width, height, min(at, len(data)), math.ceil(blocks / 8)


def _png_floor(data: bytes) -> tuple[int, int, int, int] | None:
    if len(data) < 33 or data[12:16] != b"IHDR":
        return None
    width, height, depth, colour = struct.unpack(">IIBB", data[16:26])
    channels = _PNG_CHANNELS.get(colour)
    if channels is None or width == 0 or height == 0:
        return None
    at = 8
    while at + 8 <= len(data):
        length = struct.unpack(">I", data[at : at + 4])[0]
        if data[at + 4 : at + 8] == b"IDAT":
            break
        at += 12 + length
    raw_bytes = width * height * channels * depth // 8
    return width, height, min(at, len(data)), math.ceil(raw_bytes / DEFLATE_MAX_RATIO)

"""Is an upload an image we accept, and what is it? Cheap checks first, one decode last.

Order matters, each step guarding the next:
1. size: `stat` or `len`, before reading anything;
2. format: from the magic bytes, never from the client's content type or file name;
3. header: libvips opens lazily, reading only the header (width, height, bands);
4. pixels: width × height against the limit, BEFORE any decode (libvips has no limit of its own);
5. a verifying decode, within the decode budget (budget.py): every byte of pixel data is read
   once, to catch truncated files now rather than as a grey half-picture on a later request.

Animated GIF/WebP/AVIF: the first frame is what is measured, verified and rendered (libvips
loads one page unless asked for more), so a thousand-frame file costs one frame's work.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pyvips

from mediaplane.imaging import heif
from mediaplane.imaging.budget import decoding
from mediaplane.imaging.cover import COVER_PREFIX_BYTES, check_data_covers
from mediaplane.imaging.errors import corrupt_image, premature_end
from mediaplane.imaging.formats import SNIFF_BYTES, ImageFormat, sniff_format
from mediaplane.imaging.limits import ImageLimits

# The libvips loader each accepted format must be decoded by. libvips picks a loader from the
# bytes by itself; checking it picked the one for the format we sniffed means a file can never
# pass our check as one format and reach the decoder of another.
_LOADERS = {
    ImageFormat.JPEG: "jpegload",
    ImageFormat.PNG: "pngload",
    ImageFormat.WEBP: "webpload",
    ImageFormat.GIF: "gifload",
    ImageFormat.AVIF: "heifload",
    # Decoded by libheif (pillow-heif) into a TIFF libvips reads: see heif.py.
    ImageFormat.HEIC: heif.DECODED_LOADER,
}

# Loader option of the verifying decode: fail on a truncated file (libvips' default is to
# return what it could decode and only warn). It must go in `option_string`, which reaches the
# loader: `thumbnail(..., fail_on=...)` itself does NOT stop a truncated JPEG (measured, 8.18).
# "truncated" and not "error": phone JPEGs often carry harmless recoverable glitches (extra
# bytes before a marker) that browsers show fine.
VERIFY_LOADER_OPTIONS = "fail_on=truncated"

# libjpeg's JWRN_HIT_MARKER: the data of a scan ran out before its last block.
_PREMATURE_END = "premature end of data segment"

# Width of the verifying decode. Tiny, so shrink-on-load does most of the work: a JPEG is
# decoded at 1/8 scale, which still walks all of its entropy-coded data (so truncation is seen)
# but skips most of the IDCT; PNG rows are inflated and dropped as they stream.
_VERIFY_WIDTH = 16


@dataclass(frozen=True)
class ImageInfo:
    """What an accepted image is: its sniffed format, header size and file size."""

    format: ImageFormat
    width: int
    height: int
    content_type: str
    size_bytes: int


def inspect_image(source: bytes | Path, limits: ImageLimits) -> ImageInfo:
    """Check `source` is an image within `limits` that decodes to its end; raises `ImageRejected`
    (or `ImageTooLarge`) with the reason, never a libvips error."""
    fmt, header, size = open_checked(source, limits)
    with decoding(fmt, header, wait_seconds=limits.decode_wait_seconds):
        verify_decodes(source)
    return ImageInfo(
        format=fmt,
        width=header.width,
        height=header.height,
        content_type=fmt.content_type,
        size_bytes=size,
    )


def open_checked(
    source: bytes | Path, limits: ImageLimits
) -> tuple[ImageFormat, pyvips.Image, int]:
    """Steps 1-4: the format, the image opened lazily (header only) and the size in bytes."""
    size = source.stat().st_size if isinstance(source, Path) else len(source)
    limits.check_size(size)
    fmt = limits.check_format(_head(source))
    if fmt is ImageFormat.HEIC:
        # No pixel decode before the pixel limit: libheif reads the size from the header.
        limits.check_pixels(*heif.header_size(source))
    with libvips_errors():
        header = pyvips.Image.new_from_source(image_source(source), "", access="sequential")
        loader = header.get("vips-loader")
    if not loader.startswith(_LOADERS[fmt]):
        raise corrupt_image(f"sniffed as {fmt.name} but libvips chose {loader}")
    limits.check_pixels(header.width, header.height)
    check_data_covers(_head(source, COVER_PREFIX_BYTES), size)
    return fmt, header, size


def verify_decodes(source: bytes | Path) -> None:
    """Step 5: decode every pixel once, cheaply (~30 ms for a 12 MP JPEG), failing on truncation.

    Call it only after `open_checked`: this is the step that costs time and memory.
    """
    if _head(source).startswith(b"\xff\xd8") and _jpeg_decodes_cleanly(source):
        return
    with libvips_errors():
        _decode_small(source, VERIFY_LOADER_OPTIONS)


def _jpeg_decodes_cleanly(source: bytes | Path) -> bool:
    """Decode a JPEG failing on any warning: True if it had none (nothing more to check).

    Raises `image_truncated` when its scan data stops before the last block although the file
    ends well (EOI present): libjpeg fills the rest in grey with only a warning, which
    `fail_on=truncated` lets through. Any other warning (a harmless glitch such as stray bytes
    before a marker) gives False, leaving the verdict to the lenient decode.
    """
    try:
        _decode_small(source, "fail_on=warning")
    except pyvips.Error as exc:
        detail = str(exc.detail or exc.message)
        if _PREMATURE_END in detail.lower():
            raise premature_end(detail) from exc
        return False
    return True


def _decode_small(source: bytes | Path, loader_options: str) -> None:
    thumb = pyvips.Image.thumbnail_source(
        image_source(source), _VERIFY_WIDTH, option_string=loader_options
    )
    # libvips is lazy: nothing is decoded until pixels are asked for.
    thumb.avg()


@contextmanager
def libvips_errors() -> Iterator[None]:
    """Turn any libvips failure on untrusted bytes into `ImageRejected(corrupt_image)`."""
    try:
        yield
    except pyvips.Error as exc:
        raise corrupt_image(str(exc.detail or exc.message)) from exc


def _head(source: bytes | Path, size: int = SNIFF_BYTES) -> bytes:
    if isinstance(source, Path):
        with source.open("rb") as file:
            return file.read(size)
    return source[:size]


def image_source(source: bytes | Path) -> pyvips.Source:
    # A Source, not `new_from_file(str(path))`: libvips parses `name.jpg[shrink=8]` in file
    # names as loader options, a Source takes the path literally. A fresh Source per load, as
    # each load reads it from the start.
    if sniff_format(_head(source)) is ImageFormat.HEIC:
        return pyvips.Source.new_from_memory(heif.decoded_tiff(source))
    if isinstance(source, Path):
        return pyvips.Source.new_from_file(str(source))
    return pyvips.Source.new_from_memory(source)

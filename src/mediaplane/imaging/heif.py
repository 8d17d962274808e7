"""HEIC (HEVC-coded HEIF, the iPhone camera's default) decoded by libheif from `pillow-heif`.

Why not libvips' own `heifload`: the pyvips-binary wheel's libheif has no HEVC decoder (patents);
it reads the header, then fails on the first pixel ("Support for this compression format has
not been built in: HEVC"). pillow-heif's wheel ships libheif with libde265, so HEIC is decoded
there, once, into an uncompressed TIFF in memory that libvips reads like any other upload:
every pipeline (verify, thumbnails, watermark, faces, `profile`) stays the same.

Orientation: HEIF carries it in the `irot`/`imir` boxes, which libheif applies while decoding;
the decoded pixels are upright, and no EXIF orientation is passed on (iPhones also write one,
which must NOT be applied a second time). The ICC profile (Display P3 on iPhones) is kept on the
decoded image, so `to_srgb` converts the colours before metadata is stripped.

Cost (bench/heic.py): a 12 MP HEIC decodes in several times a JPEG's time, and, unlike JPEG,
without shrink-on-load; the decoded TIFF (36 MB for 12 MP) is kept for the last two sources so
that the checks and the renders of one job decode once.
"""

from __future__ import annotations

import functools
import threading
from pathlib import Path

import pillow_heif
import pyvips

from mediaplane.imaging.errors import corrupt_image

# The libvips loader that reads what `decoded_tiff` produces (checked by `open_checked`).
DECODED_LOADER = "tiffload"


def header_size(source: bytes | Path) -> tuple[int, int]:
    """(width, height) of the primary image as displayed, from the header (no pixel decode)."""
    try:
        heif = pillow_heif.open_heif(_data(source), convert_hdr_to_8bit=True)
    except (ValueError, RuntimeError, OSError) as exc:
        raise corrupt_image(f"HEIF: {exc}") from exc
    width, height = heif.size
    return width, height


def decoded_tiff(source: bytes | Path) -> bytes:
    """The upright pixels of the primary image as an uncompressed TIFF; raises `ImageRejected`
    (`corrupt_image`) when libheif cannot decode them."""
    data = _data(source)
    with _lock:
        return _decode(data)


_lock = threading.Lock()  # one 12 MP decode at a time per process: each holds ~72 MB at its peak


@functools.lru_cache(maxsize=2)
def _decode(data: bytes) -> bytes:
    try:
        heif = pillow_heif.open_heif(data, convert_hdr_to_8bit=True)
        picture = heif.to_pillow()
    except (ValueError, RuntimeError, OSError) as exc:
        raise corrupt_image(f"HEIF: {exc}") from exc
    has_alpha = picture.mode == "RGBA"
    if picture.mode not in ("RGB", "RGBA"):
        picture = picture.convert("RGB")
    bands = 4 if has_alpha else 3
    image = pyvips.Image.new_from_memory(
        picture.tobytes(), picture.width, picture.height, bands, "uchar"
    ).copy(interpretation="srgb")
    icc = heif.info.get("icc_profile")
    if icc:
        image.set_type(pyvips.GValue.blob_type, "icc-profile-data", icc)
    return bytes(image.tiffsave_buffer(compression="none"))


def _data(source: bytes | Path) -> bytes:
    return source.read_bytes() if isinstance(source, Path) else source

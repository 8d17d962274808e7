"""Image formats Mediaplane accepts, told apart by their leading bytes.

Why sniff bytes: a client's `Content-Type` and file name are claims, not facts. Serving bytes
under a type we never checked lets an HTML or SVG file ride as an "image" (stored XSS), and
lets a format we never meant to decode reach a decoder. The magic bytes are what the decoder
itself will look at, so they are what we trust.

AVIF is accepted because the libvips here (pyvips-binary 8.18) decodes it. HEIC (HEVC-coded
HEIF, what iPhones shoot) is accepted and decoded by libheif from pillow-heif (`heif.py`): the
original is served as uploaded, labelled `image/heic`, and every rendition (`profile`,
thumbnails, watermark) is a JPEG any browser shows.
"""

from __future__ import annotations

from enum import StrEnum

# The longest signature is an ISO-BMFF `ftyp` box (AVIF/HEIC): size, "ftyp", major brand,
# minor version, then the compatible brands, where "avif" often sits. 64 bytes covers the
# `ftyp` boxes encoders write (libheif, libavif, Apple: 24-44 bytes).
SNIFF_BYTES = 64


class ImageFormat(StrEnum):
    JPEG = "jpeg"
    PNG = "png"
    WEBP = "webp"
    GIF = "gif"
    AVIF = "avif"
    HEIC = "heic"

    @property
    def content_type(self) -> str:
        return f"image/{self.value}"

    @property
    def extension(self) -> str:
        """File name suffix with its dot, as `Path.suffix` spells it: `.jpg`, `.png`..."""
        return ".jpg" if self is ImageFormat.JPEG else f".{self.value}"


def sniff_format(head: bytes) -> ImageFormat | None:
    """The accepted format the leading bytes (`SNIFF_BYTES` of them suffice) announce, or None."""
    if head.startswith(b"\xff\xd8\xff"):
        return ImageFormat.JPEG
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return ImageFormat.PNG
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return ImageFormat.WEBP
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return ImageFormat.GIF
    brands = _ftyp_brands(head)
    if brands & {b"avif", b"avis"}:
        return ImageFormat.AVIF
    if brands & _HEIF_BRANDS:
        return ImageFormat.HEIC
    return None


def sniff_unsupported(head: bytes) -> str | None:
    """The name of a known image format we refuse (to say so instead of "not an image")."""
    if head[:2] == b"BM" and int.from_bytes(head[14:18], "little") in _BMP_HEADER_SIZES:
        return "BMP"
    for magic, name in _REFUSED_MAGIC:
        if head.startswith(magic):
            return name
    return None


_HEIF_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1"}
# "BM" alone starts too much text; a BMP also has a known DIB header size at offset 14.
_BMP_HEADER_SIZES = {12, 40, 52, 56, 64, 108, 124}
_REFUSED_MAGIC = (
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"8BPS", "PSD"),
    (b"\xff\x0a", "JPEG XL"),
    (b"\x00\x00\x00\x0cJXL \r\n\x87\n", "JPEG XL"),
    (b"\x00\x00\x00\x0cjP  \r\n\x87\n", "JPEG 2000"),
    (b"%PDF-", "PDF"),
)


def _ftyp_brands(head: bytes) -> set[bytes]:
    """Major and compatible brands of a leading ISO-BMFF `ftyp` box (empty if there is none)."""
    if head[4:8] != b"ftyp":
        return set()
    box_end = min(int.from_bytes(head[:4], "big"), len(head))
    compatible = (head[i : i + 4] for i in range(16, box_end - 3, 4))
    return {head[8:12], *compatible}

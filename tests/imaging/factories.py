"""Test images, made on the fly with real encoders (libvips, Pillow), and a reader to look
inside the JPEGs that come back. No binary blobs in the repo.

Each factory returns the file's bytes. The decompression bomb is written by hand with zlib (a
1-bit greyscale PNG of zeros compresses ~1000:1) and cached for the session: 20000×20000 in
about 0.1 s and 48 KB, where encoding it with libvips would touch all 400 MP.
"""

from __future__ import annotations

import functools
import io
import struct
import zlib
from pathlib import Path

import pyvips
from PIL import ExifTags, Image, PngImagePlugin

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
ORIENTATION_DIR = FIXTURES / "exif-orientation"

GPS_LATITUDE = (48.0, 51.0, 24.0)
XMP_PACKET = (
    b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
    b'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description '
    b'xmlns:dc="http://purl.org/dc/elements/1.1/" dc:creator="Jane Doe"/></rdf:RDF></x:xmpmeta>'
)


def picture(width: int, height: int, *, alpha: bool = False) -> pyvips.Image:
    """An sRGB gradient (red across, green down, blue fixed): every region looks different."""
    xy = pyvips.Image.xyz(width, height)
    red = xy[0] * (255 / max(width - 1, 1))
    green = xy[1] * (255 / max(height - 1, 1))
    bands = [red, green, red * 0 + 96]
    if alpha:
        bands.append(red * 0 + 160)
    return bands[0].bandjoin(bands[1:]).cast("uchar").copy(interpretation="srgb")


def noisy_picture(width: int, height: int) -> pyvips.Image:
    """Random sRGB pixels: incompressible, for files that must be big."""
    bands = [pyvips.Image.gaussnoise(width, height, mean=128, sigma=60) for _ in range(3)]
    return bands[0].bandjoin(bands[1:]).cast("uchar").copy(interpretation="srgb")


def jpeg_bytes(width: int = 640, height: int = 480, *, noise: bool = False) -> bytes:
    image = noisy_picture(width, height) if noise else picture(width, height)
    return image.jpegsave_buffer(Q=90)


def png_bytes(width: int = 640, height: int = 480, *, alpha: bool = False) -> bytes:
    return picture(width, height, alpha=alpha).pngsave_buffer()


def webp_bytes(width: int = 640, height: int = 480) -> bytes:
    return picture(width, height).webpsave_buffer(Q=80)


def gif_bytes(width: int = 64, height: int = 48) -> bytes:
    return picture(width, height).gifsave_buffer()


def avif_bytes(width: int = 64, height: int = 48) -> bytes:
    return picture(width, height).heifsave_buffer(compression="av1", Q=60)


def tiff_bytes(width: int = 64, height: int = 48) -> bytes:
    return picture(width, height).tiffsave_buffer()


def truncated(data: bytes, keep: float = 0.6) -> bytes:
    """The first `keep` of a file, as an interrupted upload leaves it."""
    return data[: int(len(data) * keep)]


def truncated_jpeg() -> bytes:
    return truncated(jpeg_bytes(800, 600))


def truncated_png() -> bytes:
    return truncated(png_bytes(800, 600))


def text_file() -> bytes:
    return b"name,email\nJane Doe,jane@example.com\n" * 20


def empty_file() -> bytes:
    return b""


@functools.cache
def bomb_png(width: int = 20000, height: int = 20000) -> bytes:
    """A complete, valid 1-bit PNG of `width`×`height` black pixels: tiny file, huge image."""
    row = b"\x00" * (1 + (width + 7) // 8)  # filter byte "none", then the packed bits
    deflate = zlib.compressobj(9)
    rows_per_chunk = 1000
    idat = [deflate.compress(row * rows_per_chunk) for _ in range(height // rows_per_chunk)]
    idat.append(deflate.compress(row * (height % rows_per_chunk)))
    idat.append(deflate.flush())
    return _png_file(width, height, bit_depth=1, idat=b"".join(idat))


def bomb_png_header_only(width: int = 20000, height: int = 20000) -> bytes:
    """A PNG whose header announces `width`×`height` and whose pixel data is cut short.

    Decoding it fails (`corrupt_image`); so a `too_many_pixels` refusal proves the pixel check
    ran on the header alone, before any decode.
    """
    return truncated(bomb_png(width, height), keep=0.2)


def jpeg_with_metadata() -> bytes:
    """A JPEG carrying EXIF with GPS, XMP, IPTC and an ICC profile (Display P3)."""
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = "Mediaplane Test Camera"
    exif[ExifTags.Base.Orientation] = 1
    exif.get_ifd(ExifTags.IFD.GPSInfo).update(
        {
            ExifTags.GPS.GPSLatitudeRef: "N",
            ExifTags.GPS.GPSLatitude: GPS_LATITUDE,
            ExifTags.GPS.GPSLongitudeRef: "E",
            ExifTags.GPS.GPSLongitude: (2.0, 21.0, 3.0),
        }
    )
    out = io.BytesIO()
    Image.new("RGB", (400, 300), (200, 100, 50)).save(
        out, "JPEG", quality=95, exif=exif, xmp=XMP_PACKET, icc_profile=display_p3_profile()
    )
    return _insert_jpeg_segment(out.getvalue(), 0xED, _iptc_payload("Jane Doe at home"))


def png_with_metadata_and_alpha() -> bytes:
    """A transparent PNG carrying EXIF with GPS, a text chunk and an ICC profile."""
    exif = Image.Exif()
    exif.get_ifd(ExifTags.IFD.GPSInfo).update(
        {ExifTags.GPS.GPSLatitudeRef: "N", ExifTags.GPS.GPSLatitude: GPS_LATITUDE}
    )
    text = PngImagePlugin.PngInfo()
    text.add_text("Author", "Jane Doe")
    text.add_itxt("XML:com.adobe.xmp", XMP_PACKET.decode())
    out = io.BytesIO()
    Image.new("RGBA", (400, 300), (200, 100, 50, 128)).save(
        out, "PNG", exif=exif, pnginfo=text, icc_profile=display_p3_profile()
    )
    return out.getvalue()


def jpeg_in_display_p3(rgb: tuple[int, int, int] = (200, 100, 50)) -> bytes:
    """A flat JPEG whose pixel values are Display P3 numbers, with the P3 profile embedded."""
    image = (pyvips.Image.black(400, 300, bands=3) + list(rgb)).cast("uchar")
    image = image.copy(interpretation="srgb")
    image.set_type(pyvips.GValue.blob_type, "icc-profile-data", display_p3_profile())
    return image.jpegsave_buffer(Q=95)


def cmyk_jpeg(rgb: tuple[int, int, int] = (200, 100, 50)) -> bytes:
    """A flat CMYK JPEG (4 bands, as print workflows export), the sRGB colour `rgb` converted."""
    image = (pyvips.Image.black(400, 300, bands=3) + list(rgb)).cast("uchar")
    image = image.copy(interpretation="srgb").icc_transform("cmyk", input_profile="srgb")
    return image.jpegsave_buffer(Q=95)


@functools.cache
def display_p3_profile() -> bytes:
    """libvips' built-in Display P3 ICC profile (a real, wide-gamut matrix profile)."""
    image = pyvips.Image.black(1, 1, bands=3).copy(interpretation="srgb")
    profile: bytes = image.icc_transform("p3", input_profile="srgb").get("icc-profile-data")
    return profile


def orientation_fixture(family: str, orientation: int) -> bytes:
    """`Landscape_N.jpg` / `Portrait_N.jpg`: the same upright picture, stored for EXIF tag N."""
    return (ORIENTATION_DIR / f"{family}_{orientation}.jpg").read_bytes()


# Segments that carry metadata: APP1 (EXIF, XMP), APP2 (ICC, FlashPix), APP13 (IPTC), the
# other APPn and COM. Only APP0 (JFIF: version and pixel density) says nothing about anyone.
JPEG_METADATA_MARKERS = frozenset({0xFE, *range(0xE1, 0xF0)})


def jpeg_segments(data: bytes) -> list[tuple[int, bytes]]:
    """(marker, payload) of each JPEG segment between SOI and the start of scan."""
    assert data[:2] == b"\xff\xd8", "not a JPEG"
    segments, offset = [], 2
    while offset + 4 <= len(data) and data[offset] == 0xFF:
        marker = data[offset + 1]
        (length,) = struct.unpack(">H", data[offset + 2 : offset + 4])
        segments.append((marker, data[offset + 4 : offset + 2 + length]))
        offset += 2 + length
        if marker == 0xDA:  # start of scan: entropy-coded data follows
            return segments
    raise AssertionError("JPEG without a start of scan")


def jpeg_metadata_segments(data: bytes) -> list[str]:
    """The metadata segments of a JPEG, named like "APP1 Exif" or "APP2 ICC_PROFILE"; [] if none."""
    found = []
    for marker, payload in jpeg_segments(data):
        if marker in JPEG_METADATA_MARKERS:
            name = "COM" if marker == 0xFE else f"APP{marker - 0xE0}"
            label = payload.split(b"\x00", 1)[0][:40].decode("latin-1")
            found.append(f"{name} {label}".strip())
    return found


def _png_file(width: int, height: int, *, bit_depth: int, idat: bytes) -> bytes:
    header = struct.pack(">IIBBBBB", width, height, bit_depth, 0, 0, 0, 0)  # greyscale
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", idat)
        + _png_chunk(b"IEND", b"")
    )


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data)
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def _insert_jpeg_segment(jpeg_data: bytes, marker: int, payload: bytes) -> bytes:
    """Insert an APPn segment right after SOI, as cameras and editors write them."""
    segment = bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload
    return jpeg_data[:2] + segment + jpeg_data[2:]


def _iptc_payload(caption: str) -> bytes:
    """A Photoshop APP13 block holding one IPTC-IIM dataset (2:120, caption)."""
    text = caption.encode()
    iim = b"\x1c\x02\x78" + struct.pack(">H", len(text)) + text
    if len(iim) % 2:
        iim += b"\x00"
    resource = b"8BIM" + struct.pack(">H", 0x0404) + b"\x00\x00" + struct.pack(">I", len(iim))
    return b"Photoshop 3.0\x00" + resource + iim


def flat_jpeg(level: int, width: int = 1500, height: int = 1000) -> bytes:
    """A uniformly grey JPEG (0 black, 255 white): where a watermark must still show."""
    image = (pyvips.Image.black(width, height, bands=3) + level).cast("uchar")
    return image.copy(interpretation="srgb").jpegsave_buffer(Q=90)


def progressive_jpeg(width: int = 7000, height: int = 7000) -> bytes:
    """A progressive JPEG (4:2:0): libjpeg must hold every DCT coefficient of it while
    decoding, whatever size it is shrunk to (2 bytes × 1.5 samples per pixel: 147 MB at 49 MP).
    Encoding 49 MP takes ~1.5 s: keep it in a session-scoped fixture."""
    return picture(width, height).jpegsave_buffer(Q=85, interlace=True)


def interlaced_png(width: int = 640, height: int = 480) -> bytes:
    return picture(width, height).pngsave_buffer(interlace=True, compression=1)


def jpeg_claiming(width: int, height: int, *, actual: tuple[int, int] = (16, 16)) -> bytes:
    """A real `actual`-sized JPEG whose frame header (SOF) is patched to claim `width`×`height`:
    its entropy-coded data covers a few blocks, the rest would be invented by the decoder."""
    return _patch_jpeg_sof(jpeg_bytes(*actual), width, height)


def progressive_jpeg_claiming(width: int, height: int) -> bytes:
    data = picture(16, 16).jpegsave_buffer(Q=90, interlace=True)
    return _patch_jpeg_sof(data, width, height)


def png_claiming(width: int, height: int, *, actual: tuple[int, int] = (16, 16)) -> bytes:
    """A real `actual`-sized PNG whose IHDR (CRC fixed) claims `width`×`height`."""
    data = png_bytes(*actual)
    ihdr = struct.pack(">II", width, height) + data[24:29]
    crc = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return data[:16] + ihdr + crc + data[33:]


def webp_claiming(width: int, height: int, *, lossless: bool = False) -> bytes:
    """A real 16×16 WebP (simple format, no VP8X) whose frame header claims `width`×`height`."""
    data = bytearray(
        picture(16, 16).webpsave_buffer(Q=80, lossless=lossless, keep=pyvips.enums.ForeignKeep.NONE)
    )
    if data[12:16] == b"VP8 ":
        # Frame tag (3 bytes), start code (3), then 14-bit width and height (+2 scale bits).
        data[26:30] = struct.pack("<HH", width, height)
    elif data[12:16] == b"VP8L":
        # Signature byte, then width-1 and height-1 in 14 bits each, then 4 more bits.
        bits = struct.unpack("<I", data[21:25])[0]
        bits = (width - 1) | ((height - 1) << 14) | (bits >> 28 << 28)
        data[21:25] = struct.pack("<I", bits)
    else:
        raise ValueError(f"unexpected WebP chunk {bytes(data[12:16])!r}")
    return bytes(data)


def flat_image(fmt: str, width: int, height: int, level: int = 200) -> bytes:
    """One colour all over, the most compressible legitimate picture there is."""
    image = (pyvips.Image.black(width, height, bands=3) + level).cast("uchar")
    image = image.copy(interpretation="srgb")
    if fmt == "jpeg":
        return image.jpegsave_buffer(Q=90)
    if fmt == "progressive-jpeg":
        return image.jpegsave_buffer(Q=90, interlace=True, optimize_coding=True)
    if fmt == "png":
        return image.pngsave_buffer(compression=9)
    if fmt == "webp":
        return image.webpsave_buffer(Q=80)
    raise ValueError(fmt)


def _patch_jpeg_sof(data: bytes, width: int, height: int) -> bytes:
    at = 2
    while at + 4 <= len(data):
        marker = data[at + 1]
        length = struct.unpack(">H", data[at + 2 : at + 4])[0]
        if marker in (0xC0, 0xC1, 0xC2):
            # SOF: length (2), precision (1), height (2), width (2)
            return data[: at + 5] + struct.pack(">HH", height, width) + data[at + 9 :]
        at += 2 + length
    raise ValueError("no SOF segment")

"""`inspect_image`: what an upload is, or why it is refused, with real libvips on real files."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
import pyvips

from mediaplane.imaging import (
    ImageFormat,
    ImageLimits,
    ImageRejected,
    ImageTooLarge,
    inspect_image,
    sniff_format,
)
from mediaplane.imaging.formats import SNIFF_BYTES
from tests.imaging import factories

LIMITS = ImageLimits(max_pixels=50_000_000, max_bytes=50 * 1024 * 1024)


def rejection(source: bytes | Path, limits: ImageLimits = LIMITS) -> ImageRejected:
    with pytest.raises(ImageRejected) as caught:
        inspect_image(source, limits)
    return caught.value


@pytest.mark.parametrize(
    ("make", "fmt", "content_type"),
    [
        (factories.jpeg_bytes, ImageFormat.JPEG, "image/jpeg"),
        (factories.png_bytes, ImageFormat.PNG, "image/png"),
        (factories.webp_bytes, ImageFormat.WEBP, "image/webp"),
        (factories.gif_bytes, ImageFormat.GIF, "image/gif"),
        (factories.avif_bytes, ImageFormat.AVIF, "image/avif"),
    ],
)
def test_accepts_images_and_reports_format_and_size(
    make: Callable[[int, int], bytes], fmt: ImageFormat, content_type: str
) -> None:
    data = make(320, 200)

    info = inspect_image(data, LIMITS)

    assert (info.format, info.width, info.height) == (fmt, 320, 200)
    assert info.content_type == content_type
    assert info.size_bytes == len(data)


def test_reads_a_file_on_disk(tmp_path: Path) -> None:
    # Brackets are libvips option syntax in file names ("a.jpg[shrink=8]"); a path is literal.
    path = tmp_path / "upload[shrink=8].jpg"
    path.write_bytes(factories.jpeg_bytes(640, 480))

    info = inspect_image(path, LIMITS)

    assert (info.width, info.height, info.size_bytes) == (640, 480, path.stat().st_size)


def test_rejects_an_empty_file() -> None:
    assert rejection(factories.empty_file()).reason == "empty_file"


def test_rejects_text_as_not_an_image() -> None:
    error = rejection(factories.text_file())

    assert error.reason == "not_an_image"
    assert "not an image" in error.message


def test_rejects_a_known_format_we_do_not_accept_as_unsupported() -> None:
    error = rejection(factories.tiff_bytes())

    assert error.reason == "unsupported_format"
    assert "TIFF" in error.message


def test_rejects_a_format_left_out_of_the_limits_as_unsupported() -> None:
    only_jpeg = ImageLimits(
        max_pixels=10**6, max_bytes=10**6, formats=frozenset({ImageFormat.JPEG})
    )

    assert rejection(factories.png_bytes(), only_jpeg).reason == "unsupported_format"


@pytest.mark.parametrize("make", [factories.truncated_jpeg, factories.truncated_png])
def test_rejects_a_truncated_file_as_corrupt(make: Callable[[], bytes]) -> None:
    # libvips alone decodes a truncated file without complaint (grey rows where data is
    # missing); only the verifying decode with fail_on=truncated catches it.
    error = rejection(make())

    assert error.reason == "corrupt_image"
    assert "truncated" in error.message


def test_rejects_garbage_behind_valid_magic_bytes_as_corrupt() -> None:
    assert rejection(b"\xff\xd8\xff" + bytes(range(256)) * 4).reason == "corrupt_image"
    assert rejection(b"\x89PNG\r\n\x1a\n" + b"\x00" * 100).reason == "corrupt_image"


def test_rejects_a_decompression_bomb_from_its_header_quickly() -> None:
    bomb = factories.bomb_png(20000, 20000)  # 48 KB on disk, 400 MP once decoded

    started = time.perf_counter()
    error = rejection(bomb)
    elapsed = time.perf_counter() - started

    assert error.reason == "too_many_pixels"
    assert error.message == "image is 20000×20000 = 400 MP, above the 50 MP limit"
    assert error.details == {"width": 20000, "height": 20000, "max_pixels": 50_000_000}
    # Measured ~1 ms; a decode would cost far more here. Generous, so never flaky.
    assert elapsed < 1.0


def test_checks_pixels_before_any_decode() -> None:
    # The header says 20000×20000 and the pixel data is cut short: decoding anything would end
    # in corrupt_image, so too_many_pixels proves the refusal came from the header alone.
    assert rejection(factories.bomb_png_header_only()).reason == "too_many_pixels"


def test_accepts_exactly_max_pixels() -> None:
    limits = ImageLimits(max_pixels=640 * 480, max_bytes=10**7)

    assert inspect_image(factories.jpeg_bytes(640, 480), limits).width == 640
    assert rejection(factories.jpeg_bytes(641, 480), limits).reason == "too_many_pixels"


def test_rejects_oversize_bytes() -> None:
    data = factories.jpeg_bytes(640, 480)
    limits = ImageLimits(max_pixels=10**8, max_bytes=len(data) - 1)

    with pytest.raises(ImageTooLarge) as caught:
        inspect_image(data, limits)

    assert caught.value.reason == "file_too_large"
    assert caught.value.details == {"size_bytes": len(data), "max_bytes": len(data) - 1}


def test_rejects_an_oversize_file_on_disk_from_its_size(tmp_path: Path) -> None:
    path = tmp_path / "huge.jpg"
    with path.open("wb") as file:  # sparse: 60 MiB announced, nothing written
        file.truncate(60 * 1024 * 1024)

    with pytest.raises(ImageTooLarge) as caught:
        inspect_image(path, LIMITS)

    assert caught.value.message == "image file is 60 MiB, above the 50 MiB limit"


def test_file_too_large_is_checked_before_the_format() -> None:
    limits = ImageLimits(max_pixels=10**8, max_bytes=10)

    with pytest.raises(ImageTooLarge):
        inspect_image(factories.text_file(), limits)


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (b"\xff\xd8\xff\xe0\x00\x10JFIF", ImageFormat.JPEG),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", ImageFormat.PNG),
        (b"RIFF\x00\x00\x00\x00WEBPVP8 ", ImageFormat.WEBP),
        (b"GIF87a\x01\x00", ImageFormat.GIF),
        (b"GIF89a\x01\x00", ImageFormat.GIF),
        (b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00mif1miaf", ImageFormat.AVIF),
        # AVIF announced only among the compatible brands:
        (b"\x00\x00\x00\x20ftypmif1\x00\x00\x00\x00mif1miafMA1Bavif", ImageFormat.AVIF),
        (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic", ImageFormat.HEIC),
        (b"<html><img src=x onerror=alert(1)>", None),
        (b"<svg xmlns='http://www.w3.org/2000/svg'/>", None),
        (b"\xff\xd8", None),
        (b"", None),
    ],
)
def test_sniff_format_trusts_magic_bytes_only(head: bytes, expected: ImageFormat | None) -> None:
    assert sniff_format(head) is expected


def test_sniff_bytes_suffice_for_real_files() -> None:
    for make, fmt in [
        (factories.jpeg_bytes, ImageFormat.JPEG),
        (factories.png_bytes, ImageFormat.PNG),
        (factories.webp_bytes, ImageFormat.WEBP),
        (factories.gif_bytes, ImageFormat.GIF),
        (factories.avif_bytes, ImageFormat.AVIF),
    ]:
        assert sniff_format(make(32, 32)[:SNIFF_BYTES]) is fmt


def test_a_heic_header_without_an_image_is_corrupt_not_a_crash() -> None:
    heic = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 64

    error = rejection(heic)

    assert error.reason == "corrupt_image"


def test_untrusted_libvips_loaders_are_blocked() -> None:
    # SVG never gets past the sniffing, but libvips' SVG loader (librsvg) must not run on
    # anything in this process either: importing the package blocks the untrusted loaders.
    svg = b'<svg xmlns="http://www.w3.org/2000/svg" width="8" height="8"><rect/></svg>'

    with pytest.raises(pyvips.Error, match="not in a known format"):
        pyvips.Image.new_from_buffer(svg, "")


def test_format_content_types_and_extensions() -> None:
    assert [(f.content_type, f.extension) for f in ImageFormat] == [
        ("image/jpeg", ".jpg"),
        ("image/png", ".png"),
        ("image/webp", ".webp"),
        ("image/gif", ".gif"),
        ("image/avif", ".avif"),
        ("image/heic", ".heic"),
    ]

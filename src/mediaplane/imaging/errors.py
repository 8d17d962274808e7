"""Why an image was refused, as domain errors the API handlers already know how to render.

`reason` is the stable code clients and tests match on; `message` is for a human and names the
numbers involved; `details` carries the same numbers for machines.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from typing import Any

from mediaplane.errors import InvalidInput, PayloadTooLarge


class RejectReason(StrEnum):
    EMPTY_FILE = "empty_file"
    NOT_AN_IMAGE = "not_an_image"
    UNSUPPORTED_FORMAT = "unsupported_format"
    TOO_MANY_PIXELS = "too_many_pixels"
    CORRUPT_IMAGE = "corrupt_image"
    IMAGE_TRUNCATED = "image_truncated"
    FILE_TOO_LARGE = "file_too_large"


class ImageRejected(InvalidInput):
    """The bytes are not an image we accept: empty, unknown, unsupported, too big or corrupt."""

    def __init__(
        self, reason: RejectReason, message: str, *, details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(reason, message, details=details)


class ImageTooLarge(PayloadTooLarge):
    """The file has more bytes than the limit allows (a 413, where `ImageRejected` is a 400)."""

    def __init__(self, *, size_bytes: int, max_bytes: int) -> None:
        over = _over(size_bytes, max_bytes, _bytes, "byte")
        super().__init__(
            RejectReason.FILE_TOO_LARGE,
            f"image file is {over} limit",
            details={"size_bytes": size_bytes, "max_bytes": max_bytes},
        )


def empty_file() -> ImageRejected:
    return ImageRejected(RejectReason.EMPTY_FILE, "the file is empty (0 bytes)")


def not_an_image(accepted: str) -> ImageRejected:
    return ImageRejected(
        RejectReason.NOT_AN_IMAGE,
        f"the file is not an image (its first bytes match no image format; accepted: {accepted})",
    )


def unsupported_format(name: str, accepted: str) -> ImageRejected:
    return ImageRejected(
        RejectReason.UNSUPPORTED_FORMAT,
        f"{name} images are not accepted (accepted: {accepted})",
        details={"format": name},
    )


def too_many_pixels(width: int, height: int, max_pixels: int) -> ImageRejected:
    over = _over(width * height, max_pixels, _megapixels, "pixel")
    return ImageRejected(
        RejectReason.TOO_MANY_PIXELS,
        f"image is {width}×{height} = {over} limit",
        details={"width": width, "height": height, "max_pixels": max_pixels},
    )


def corrupt_image(libvips_detail: str) -> ImageRejected:
    # The first line of libvips' own complaint ("VipsJpeg: premature end of JPEG image") is
    # what whoever debugs a refused upload needs; the rest repeats it.
    lines = [line.strip() for line in libvips_detail.splitlines() if line.strip()]
    cause = f" ({lines[0]})" if lines else ""
    return ImageRejected(
        RejectReason.CORRUPT_IMAGE, f"the image data is truncated or corrupt{cause}"
    )


def image_truncated(width: int, height: int, data_bytes: int, min_data_bytes: int) -> ImageRejected:
    return ImageRejected(
        RejectReason.IMAGE_TRUNCATED,
        f"the image data cannot cover its declared {width}×{height}: {max(0, data_bytes):,} "
        f"bytes of data where that size needs at least {min_data_bytes:,}",
        details={
            "width": width,
            "height": height,
            "data_bytes": max(0, data_bytes),
            "min_data_bytes": min_data_bytes,
        },
    )


def premature_end(libvips_detail: str) -> ImageRejected:
    # libjpeg's "premature end of data segment": the scan data stopped before the last block
    # of the declared size (and the decoder would have drawn the rest in grey).
    lines = [line.strip() for line in libvips_detail.splitlines() if line.strip()]
    cause = f" ({lines[0]})" if lines else ""
    return ImageRejected(
        RejectReason.IMAGE_TRUNCATED,
        f"the image data ends before the image does{cause}",
    )


def _over(value: int, limit: int, human: Callable[[int], str], unit: str) -> str:
    """'400 MP, above the 50 MP', exact counts when rounding would show two equal numbers."""
    if human(value) == human(limit):
        return f"{value:,} {unit}s, above the {limit:,}-{unit}"
    return f"{human(value)}, above the {human(limit)}"


def _megapixels(pixels: int) -> str:
    return f"{round(pixels / 1_000_000, 1):g} MP"


def _bytes(size: int) -> str:
    if size < 1024:
        return f"{size} bytes"
    if size < 1024 * 1024:
        return f"{round(size / 1024, 1):g} KiB"
    return f"{round(size / (1024 * 1024), 1):g} MiB"

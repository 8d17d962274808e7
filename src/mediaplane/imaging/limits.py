"""Every security limit on incoming images, in one place, each checked before the work it guards.

As in imgproxy: bytes are checked before anything is read, the format from the magic bytes
before a decoder is chosen, and width × height from the header before a single pixel is decoded.
libvips itself has no pixel limit and opens lazily, so a 48 KB PNG announcing 20000×20000 (a
"decompression bomb") costs nothing until someone asks for its pixels; this is where we refuse.
"""

from __future__ import annotations

from dataclasses import dataclass

from mediaplane.imaging import errors
from mediaplane.imaging.errors import ImageTooLarge
from mediaplane.imaging.formats import ImageFormat, sniff_format, sniff_unsupported


@dataclass(frozen=True)
class ImageLimits:
    """What an image may be; build it from settings (`MAX_IMAGE_PIXELS`, `IMAGES_MAX_BYTES`)."""

    max_pixels: int
    max_bytes: int
    formats: frozenset[ImageFormat] = frozenset(ImageFormat)

    def __post_init__(self) -> None:
        if self.max_pixels <= 0 or self.max_bytes <= 0:
            raise ValueError("ImageLimits: max_pixels and max_bytes must be positive")
        if not self.formats:
            raise ValueError("ImageLimits: at least one format must be accepted")

    def check_size(self, size_bytes: int) -> None:
        """Refuse an empty file or one over `max_bytes`, before reading it."""
        if size_bytes == 0:
            raise errors.empty_file()
        if size_bytes > self.max_bytes:
            raise ImageTooLarge(size_bytes=size_bytes, max_bytes=self.max_bytes)

    def check_format(self, head: bytes) -> ImageFormat:
        """The format the leading bytes announce, if it is one we accept."""
        fmt = sniff_format(head)
        if fmt is not None and fmt in self.formats:
            return fmt
        refused = fmt.name if fmt is not None else sniff_unsupported(head)
        if refused is None:
            raise errors.not_an_image(self._accepted())
        raise errors.unsupported_format(refused, self._accepted())

    def check_pixels(self, width: int, height: int) -> None:
        """Refuse more than `max_pixels`; call it with the header's size, before decoding."""
        if width * height > self.max_pixels:
            raise errors.too_many_pixels(width, height, self.max_pixels)

    def _accepted(self) -> str:
        return ", ".join(f.name for f in ImageFormat if f in self.formats)

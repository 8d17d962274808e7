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

# --- the decode budget (imaging/budget.py): memory for decodes in flight, per process ----------
# 320 MB: two decodes of the largest common case at once (a 49 MP progressive JPEG holds 147 MB
# of coefficients; 2 cores cannot run more than two at full speed anyway), and with the rest of
# a process (~150 MB) under the 500 MB a 16-request burst may add (docs/operations.md).
DECODE_BUDGET_MB = 320
DECODE_BUDGET_BYTES = DECODE_BUDGET_MB * 1024 * 1024
# How long an HTTP request waits for its share before a 503; jobs wait as long as it takes.
DECODE_WAIT_SECONDS = 10.0
DECODE_RETRY_AFTER_SECONDS = 5
# Rows a streaming decoder (baseline JPEG, plain PNG, WebP) and the shrink after it keep
# resident, as charged to the budget: measured up to 34 MB at 4000 px wide and 50 MB at
# 7000 px (3 bands), i.e. up to ~3000 rows' worth (bench/decode_memory.py).
STREAMING_DECODE_ROWS = 3072
# Charged on top of every decode: libvips' per-thread buffers and the output being encoded
# (a progressive 12 MP JPEG held 41 MB for 34 MB of coefficients).
DECODE_OVERHEAD_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True)
class ImageLimits:
    """What an image may be; build it from settings (`MAX_IMAGE_PIXELS`, `IMAGES_MAX_BYTES`).

    `decode_wait_seconds` is how long a decode waits for the decode budget before giving up
    with a 503 (`DECODE_WAIT_SECONDS` for HTTP requests); None, for jobs, waits its turn.
    """

    max_pixels: int
    max_bytes: int
    formats: frozenset[ImageFormat] = frozenset(ImageFormat)
    decode_wait_seconds: float | None = None

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

"""The decode budget: how much memory this process may spend on image decodes at one time.

Every decode of untrusted pixels — the Images server's `profile`, the upload check, the photo
derivatives, face detection — reserves its estimated memory here first, so that the number of
threads is no longer what bounds memory. A request for more than is free waits its turn (first
come, first served, so a large decode is never starved by a stream of small ones); an HTTP
request waits at most `DECODE_WAIT_SECONDS` and then answers 503 with `Retry-After`, a job waits
as long as it takes.

Why an estimate in bytes and not a count of decodes: what a decode holds depends on the format,
not only on the pixels (bench figures in docs/operations.md, "Memory budget"). A progressive
JPEG keeps every DCT coefficient of the whole image (2 bytes per sample: 147 MB for a 49 MP
4:2:0 photo) whatever size it is shrunk to, and so does an interlaced PNG (its full frame), while
a baseline JPEG or a plain PNG streams through a strip of rows (under 50 MB at 49 MP).
"""

from __future__ import annotations

import collections
import ctypes
import ctypes.util
import math
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pyvips

from mediaplane.errors import Unavailable
from mediaplane.imaging.formats import ImageFormat, sniff_format
from mediaplane.imaging.limits import (
    DECODE_BUDGET_BYTES,
    DECODE_OVERHEAD_BYTES,
    DECODE_RETRY_AFTER_SECONDS,
    STREAMING_DECODE_ROWS,
)

# Samples per pixel a progressive JPEG keeps as coefficients, by chroma subsampling (1 luma
# plane at full size plus 2 chroma planes at 1/4, 1/2 or full size).
_JPEG_PLANES = {"4:2:0": 1.5, "4:2:2": 2.0, "4:4:4": 3.0}
_SAMPLE_BYTES = {
    "uchar": 1,
    "char": 1,
    "ushort": 2,
    "short": 2,
    "uint": 4,
    "int": 4,
    "float": 4,
    "double": 8,
}


def decode_bytes(fmt: ImageFormat, header: pyvips.Image) -> int:
    """The memory a decode of this (lazily opened) image holds at its peak, estimated from the
    header alone: what the decoder must buffer (all coefficients of a progressive JPEG, the
    whole frame of an interlaced PNG, GIF or AVIF), plus a strip of rows for the shrink after
    it, plus a fixed overhead. Measured against bench/decode_memory.py."""
    pixels = header.width * header.height
    sample = _SAMPLE_BYTES.get(header.format, 4)
    frame = pixels * header.bands * sample
    strip = min(frame, header.width * header.bands * sample * STREAMING_DECODE_ROWS)
    if fmt is ImageFormat.JPEG and _flag(header, "interlaced"):
        # libjpeg buffers all coefficients of a progressive file before the first row is out;
        # the rows it then produces are shrunk on load (1/8) and stream.
        planes = _JPEG_PLANES.get(_text(header, "jpeg-chroma-subsample"), float(header.bands))
        if header.bands == 1:
            planes = 1.0
        held = math.ceil(pixels * planes * 2)
    elif fmt is ImageFormat.PNG and _flag(header, "interlaced"):
        held = frame + strip
    elif fmt in (ImageFormat.GIF, ImageFormat.AVIF):
        # nsgif renders a frame as RGBA; libheif decodes the whole picture (and its YUV planes).
        held = max(frame, pixels * 4) + strip
    else:
        # Baseline JPEG, plain PNG, WebP: rows stream through; a strip of them (and the shrink's
        # buffers around it) is what stays resident, never more than the frame itself.
        held = strip
    return held + DECODE_OVERHEAD_BYTES


def _flag(header: pyvips.Image, name: str) -> bool:
    return bool(header.get_typeof(name)) and bool(header.get(name))


def _text(header: pyvips.Image, name: str) -> str:
    return str(header.get(name)) if header.get_typeof(name) else ""


class DecodeBudget:
    """A pool of `capacity_bytes` that decodes reserve from and give back, waiting in order.

    A reservation larger than the whole pool is cut to the pool's size: it then runs alone
    rather than never. Reservations nest: a decode inside a reservation already held by the
    same thread (the Images server reserves before it reads the original) takes nothing more.
    """

    def __init__(
        self, capacity_bytes: int, *, retry_after_seconds: int = DECODE_RETRY_AFTER_SECONDS
    ) -> None:
        if capacity_bytes <= 0:
            raise ValueError(f"DecodeBudget: capacity must be positive, not {capacity_bytes}")
        self._capacity = capacity_bytes
        self._in_use = 0
        self._queue: collections.deque[object] = collections.deque()
        self._changed = threading.Condition()
        self._held = threading.local()
        self.retry_after_seconds = retry_after_seconds

    @property
    def capacity_bytes(self) -> int:
        return self._capacity

    @property
    def in_use_bytes(self) -> int:
        return self._in_use

    @property
    def waiting(self) -> int:
        return len(self._queue)

    def resize(self, capacity_bytes: int) -> None:
        """A new capacity (from settings at start); reservations already held stay valid."""
        if capacity_bytes <= 0:
            raise ValueError(f"DecodeBudget: capacity must be positive, not {capacity_bytes}")
        with self._changed:
            self._capacity = capacity_bytes
            self._changed.notify_all()

    @contextmanager
    def reserve(self, size_bytes: int, *, wait_seconds: float | None) -> Iterator[int]:
        """Hold `size_bytes` of the pool for the `with` block; yields what was reserved.

        Waits at most `wait_seconds` (None: as long as it takes), then raises `Unavailable`
        (`decode_budget_exhausted`, with `retry_after`). Always given back, even on errors.
        """
        if getattr(self._held, "depth", 0):
            # Already inside this thread's reservation, sized for the same decode.
            self._held.depth += 1
            try:
                yield 0
            finally:
                self._held.depth -= 1
            return
        size = min(max(0, size_bytes), self._capacity)
        self._acquire(size, wait_seconds)
        self._held.depth = 1
        try:
            yield size
        finally:
            self._held.depth = 0
            self._release(size)

    def _acquire(self, size: int, wait_seconds: float | None) -> None:
        ticket = object()
        deadline = None if wait_seconds is None else time.monotonic() + wait_seconds
        with self._changed:
            self._queue.append(ticket)
            try:
                while not (self._queue[0] is ticket and self._fits(size)):
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        raise self._exhausted(size)
                    self._changed.wait(remaining)
                self._in_use += size
            finally:
                self._queue.remove(ticket)
                # The next in line may fit now (or we gave up our place at the head).
                self._changed.notify_all()

    def _fits(self, size: int) -> bool:
        return self._in_use + min(size, self._capacity) <= self._capacity

    def _release(self, size: int) -> None:
        with self._changed:
            self._in_use = max(0, self._in_use - size)
            self._changed.notify_all()

    def _exhausted(self, size: int) -> Unavailable:
        return Unavailable(
            "decode_budget_exhausted",
            f"too many images are being decoded right now; retry in {self.retry_after_seconds} s",
            details={"decode_bytes": size, "decode_budget_bytes": self._capacity},
            retry_after=self.retry_after_seconds,
        )


# The process's one budget, shared by the HTTP threads and the in-process job worker; sized from
# DECODE_BUDGET_MB when the runtime opens (`configure_decode_budget`).
DECODE_BUDGET = DecodeBudget(DECODE_BUDGET_BYTES)


def configure_decode_budget(capacity_bytes: int) -> DecodeBudget:
    DECODE_BUDGET.resize(capacity_bytes)
    return DECODE_BUDGET


@contextmanager
def decoding(
    fmt: ImageFormat, header: pyvips.Image, *, wait_seconds: float | None
) -> Iterator[None]:
    """Reserve what decoding `header` (from `open_checked`) will hold, for the `with` block."""
    with DECODE_BUDGET.reserve(decode_bytes(fmt, header), wait_seconds=wait_seconds):
        yield


# Enough leading bytes to hold the header of nearly every file (JPEG: SOF after EXIF, ICC and
# XMP segments; PNG: IHDR comes first; WebP: VP8X; AVIF: meta box).
HEADER_PREFIX_BYTES = 256 * 1024


def decode_bytes_of_prefix(prefix: bytes) -> int:
    """`decode_bytes` from a file's leading bytes, before the rest is read; the whole budget
    when the header cannot be read from them (the decode then runs alone, never unaccounted)."""
    fmt = sniff_format(prefix)
    if fmt is None:
        return DECODE_BUDGET.capacity_bytes
    try:
        header = pyvips.Image.new_from_buffer(prefix, "", access="sequential")
        return decode_bytes(fmt, header)
    except pyvips.Error:
        return DECODE_BUDGET.capacity_bytes


# glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD_BYTES = 1024 * 1024


def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        return ctypes.CDLL(name)
    except OSError:
        return None


def return_freed_memory_promptly() -> bool:
    """Make glibc map blocks of 1 MB and more on their own and unmap them when freed.

    By default glibc raises its mmap threshold each time it frees a mapped block (up to 32 MB),
    after which the multi-megabyte buffers of later decodes come from the thread arenas and
    stay there, fragmented: measured, 8 renders of 49 MP progressive JPEGs one or two at a
    time (under the budget) peaked at +403 MB and left +169 MB resident; with a fixed threshold
    +305 MB and +25 MB (16 renders: +316 MB); render times did not change beyond
    the noise of a shared machine. Fixing the threshold turns the
    dynamic adjustment off. Returns False where the C library is not glibc (nothing done).
    """
    mallopt = getattr(_libc(), "mallopt", None)
    if mallopt is None:
        return False
    return bool(
        mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_BYTES)
        and mallopt(_M_TRIM_THRESHOLD, _MMAP_THRESHOLD_BYTES)
    )


def release_freed_memory() -> bool:
    """Give the free pages of every malloc arena back to the system (glibc `malloc_trim(0)`).

    Blocks under the mmap threshold come from the arenas, and once freed they stay resident
    wherever a block still in use sits above them: after a 36 MP thumbnail and watermark the
    worker kept ~20 MB more than before them, on top of which the face step then peaked. Called
    once after each job step, not after each decode: pages handed back fault in again on the
    next use, which cost ~5 ms per 12 MP thumbnail call when done after every call, but is
    noise against a step. Returns False where the C library is not glibc (nothing done).
    """
    malloc_trim = getattr(_libc(), "malloc_trim", None)
    if malloc_trim is None:
        return False
    malloc_trim(0)
    return True

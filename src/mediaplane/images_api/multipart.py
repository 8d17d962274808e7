"""Receive a multipart/form-data body with exactly one part named `file`, streamed to disk.

Starlette's `request.form()` would accept any number of parts and spool all of them before we
could refuse anything; this reader refuses a second part, a wrong field name or a body past the
byte limit as soon as it sees it, and never holds more than one network chunk in memory.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import IO

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, MultipartState, parse_options_header

from mediaplane.errors import InvalidInput, PayloadTooLarge

FIELD_NAME = "file"


class InvalidMultipart(InvalidInput):
    def __init__(self, message: str) -> None:
        super().__init__("invalid_multipart", message)


@dataclass(frozen=True)
class ReceivedFile:
    size: int
    filename: str | None


def boundary_of(content_type: str | None) -> bytes:
    """The boundary of a multipart/form-data Content-Type, or `InvalidMultipart`."""
    if not content_type:
        raise InvalidMultipart("Content-Type multipart/form-data is required")
    media_type, options = parse_options_header(content_type)
    if media_type != b"multipart/form-data":
        raise InvalidMultipart("Content-Type must be multipart/form-data")
    boundary = options.get(b"boundary")
    if not boundary:
        raise InvalidMultipart("the multipart boundary is missing from Content-Type")
    return boundary


class _SingleFileReceiver:
    def __init__(self, dest: IO[bytes], max_bytes: int) -> None:
        self.dest = dest
        self.max_bytes = max_bytes
        self.parts = 0
        self.size = 0
        self.filename: str | None = None
        self._header_field = bytearray()
        self._header_value = bytearray()
        self._disposition: bytes | None = None
        self.error: Exception | None = None

    # Callbacks cannot raise through the parser cleanly, so the first error is kept and checked
    # after each chunk.
    def on_part_begin(self) -> None:
        self.parts += 1
        self._disposition = None
        if self.parts > 1 and self.error is None:
            self.error = InvalidMultipart(f"exactly one part named {FIELD_NAME!r} is allowed")

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_field += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def on_header_end(self) -> None:
        if bytes(self._header_field).lower() == b"content-disposition":
            self._disposition = bytes(self._header_value)
        self._header_field.clear()
        self._header_value.clear()

    def on_headers_finished(self) -> None:
        if self.error is not None:
            return
        if self._disposition is None:
            self.error = InvalidMultipart("a part has no Content-Disposition")
            return
        kind, options = parse_options_header(self._disposition)
        name = options.get(b"name", b"").decode(errors="replace")
        if kind != b"form-data" or name != FIELD_NAME:
            self.error = InvalidMultipart(f"unexpected part {name!r}: send one part named 'file'")
            return
        raw_filename = options.get(b"filename")
        self.filename = raw_filename.decode(errors="replace") if raw_filename else None

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self.error is not None:
            return
        self.size += end - start
        if self.size > self.max_bytes:
            self.error = PayloadTooLarge(
                "file_too_large", f"the file is larger than {self.max_bytes} bytes"
            )
            return
        self.dest.write(data[start:end])


async def receive_single_file(
    chunks: AsyncIterator[bytes], *, content_type: str | None, dest: IO[bytes], max_bytes: int
) -> ReceivedFile:
    """Write the one `file` part of the body to `dest`; raise on any other shape."""
    receiver = _SingleFileReceiver(dest, max_bytes)
    parser = MultipartParser(
        boundary_of(content_type),
        {
            "on_part_begin": receiver.on_part_begin,
            "on_header_field": receiver.on_header_field,
            "on_header_value": receiver.on_header_value,
            "on_header_end": receiver.on_header_end,
            "on_headers_finished": receiver.on_headers_finished,
            "on_part_data": receiver.on_part_data,
        },
    )
    try:
        async for chunk in chunks:
            parser.write(chunk)
            if receiver.error is not None:
                raise receiver.error
    except MultipartParseError as exc:
        raise InvalidMultipart(f"malformed multipart body: {exc}") from None
    if receiver.error is not None:
        raise receiver.error
    if receiver.parts == 0:
        raise InvalidMultipart(f"the body has no part named {FIELD_NAME!r}")
    if parser.state != MultipartState.END:
        raise InvalidMultipart("the multipart body ends before its closing boundary")
    return ReceivedFile(size=receiver.size, filename=receiver.filename)

"""Object key rules shared by every backend.

One rule set for all backends keeps keys portable: an object written on local disk can move to
S3 (and back) under the same key. Keys are checked before any backend touches them, so the local
store can map them to paths without any way to leave its root.
"""

from __future__ import annotations

from mediaplane.storage.base import InvalidKey

MAX_KEY_BYTES = 1024
"""S3's own limit on key length (UTF-8 bytes)."""

RESERVED_SEGMENT = ".mediaplane"
"""First segment the local store keeps its temp files and metadata under; no key may use it."""


def _has_forbidden_char(text: str) -> bool:
    # Backslash: a path separator on Windows tools. Control characters (NUL, newline, DEL,
    # C1): they break paths, HTTP headers and log lines.
    return any(ch == "\\" or ord(ch) < 0x20 or 0x7F <= ord(ch) <= 0x9F for ch in text)


def _utf8_size(text: str) -> int | None:
    try:
        return len(text.encode("utf-8"))
    except UnicodeEncodeError:  # lone surrogates
        return None


def validate_key(key: str) -> str:
    """Return `key` unchanged if it is a valid object key, else raise `InvalidKey`.

    Valid: relative, `/`-separated, no empty, `.` or `..` segment, no backslash or control
    character, at most 1024 UTF-8 bytes, and not under the reserved `.mediaplane/`.
    """
    size = _utf8_size(key)
    if not key or size is None or size > MAX_KEY_BYTES or _has_forbidden_char(key):
        raise InvalidKey(key)
    segments = key.split("/")
    if any(segment in ("", ".", "..") for segment in segments):
        raise InvalidKey(key)
    if segments[0] == RESERVED_SEGMENT:
        raise InvalidKey(key)
    return key


def validate_prefix(prefix: str) -> str:
    """Return `prefix` if some valid key could start with it, else raise `InvalidKey`.

    The empty prefix (every key) is valid; so is a partial last segment (`photos/ab`).
    """
    if not prefix:
        return prefix
    size = _utf8_size(prefix)
    if size is None or size > MAX_KEY_BYTES or _has_forbidden_char(prefix):
        raise InvalidKey(prefix)
    complete_segments = prefix.split("/")[:-1]
    if any(segment in ("", ".", "..") for segment in complete_segments):
        raise InvalidKey(prefix)
    if complete_segments and complete_segments[0] == RESERVED_SEGMENT:
        raise InvalidKey(prefix)
    return prefix

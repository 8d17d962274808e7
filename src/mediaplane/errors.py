"""Domain errors shared by every service.

Services raise these; each HTTP API has one handler that maps the `kind` to a status code and
renders its own shape (Authgear's `{"error": ...}` for the Images server, RFC 9457 problem+json
for the Media API). `reason` is a stable snake_case code; APIs may re-spell it (Authgear uses
PascalCase) but never invent another.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, ClassVar


class ErrorKind(StrEnum):
    INVALID = "invalid"
    UNAUTHENTICATED = "unauthenticated"
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not_found"
    CONFLICT = "conflict"
    TOO_LARGE = "too_large"
    UNSUPPORTED_TYPE = "unsupported_type"
    RATE_LIMITED = "rate_limited"
    UNAVAILABLE = "unavailable"


class MediaplaneError(Exception):
    """Base of every error a client may see; `reason` is machine-readable, `message` human."""

    kind: ClassVar[ErrorKind] = ErrorKind.INVALID

    def __init__(
        self,
        reason: str,
        message: str,
        *,
        details: dict[str, Any] | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.details = details or {}
        self.retry_after = retry_after


class InvalidInput(MediaplaneError):
    kind = ErrorKind.INVALID


class Unauthenticated(MediaplaneError):
    kind = ErrorKind.UNAUTHENTICATED


class Forbidden(MediaplaneError):
    kind = ErrorKind.FORBIDDEN


class NotFound(MediaplaneError):
    kind = ErrorKind.NOT_FOUND


class Conflict(MediaplaneError):
    kind = ErrorKind.CONFLICT


class PayloadTooLarge(MediaplaneError):
    kind = ErrorKind.TOO_LARGE


class UnsupportedMediaType(MediaplaneError):
    """The bytes are not of a type the route takes (a 415)."""

    kind = ErrorKind.UNSUPPORTED_TYPE


class RateLimited(MediaplaneError):
    kind = ErrorKind.RATE_LIMITED


class Unavailable(MediaplaneError):
    kind = ErrorKind.UNAVAILABLE

"""Storage key conventions of acme-media-api.md, in one place."""

from __future__ import annotations

import re
import uuid
from datetime import datetime

from mediaplane.errors import InvalidInput

# Subjects become key segments: no slash, no dot-only names, nothing a store would mangle.
_SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@|:+=-]{0,127}$")

DERIVATIVES = ("thumb-400", "thumb-800", "watermarked")


def _segment(value: str) -> str:
    if not _SEGMENT.match(value):
        raise InvalidInput("invalid_subject", f"{value!r} cannot be part of a storage key")
    return value


def selfie_key(user_id: str, at: datetime) -> str:
    """`selfies/{userId}/{timestamp}.jpg`, timestamp in Unix milliseconds."""
    return f"selfies/{_segment(user_id)}/{int(at.timestamp() * 1000)}.jpg"


def photo_prefix(project_id: uuid.UUID, photo_id: uuid.UUID) -> str:
    return f"photos/{project_id}/{photo_id}"


def photo_key(project_id: uuid.UUID, photo_id: uuid.UUID) -> str:
    """`photos/{projectId}/{photoId}/original.jpg`."""
    return f"{photo_prefix(project_id, photo_id)}/original.jpg"


def derivative_key(project_id: uuid.UUID, photo_id: uuid.UUID, name: str) -> str:
    """`photos/{projectId}/{photoId}/{thumb-400|thumb-800|watermarked}.jpg`."""
    if name not in DERIVATIVES:
        raise ValueError(f"unknown derivative {name!r}")
    return f"{photo_prefix(project_id, photo_id)}/{name}.jpg"


def profile_picture_key(operator_id: str) -> str:
    """`operators/{operatorId}/profile.jpg`."""
    return f"operators/{_segment(operator_id)}/profile.jpg"


def accepted_copy_key(key: str) -> str:
    """Where the last accepted object of a reused key is kept (`profile.jpg` →
    `profile.accepted.jpg`), so a rejected re-upload can be rolled back."""
    stem, _, extension = key.rpartition(".")
    return f"{stem}.accepted.{extension}"


def aside_copy_key(key: str, upload_id: uuid.UUID) -> str:
    """Where one upload's accepted bytes are kept while its URL could still overwrite `key`
    (`original.jpg` → `original.aside-{uploadId}.jpg`): beside the key, under the same prefix,
    so erasing a prefix erases it too."""
    stem, _, extension = key.rpartition(".")
    return f"{stem}.aside-{upload_id}.{extension}"

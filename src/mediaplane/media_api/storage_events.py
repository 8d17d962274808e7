"""Parse bucket event notifications into the keys of created objects.

Accepted, one notification per request:

- The S3 event format (AWS S3 → SNS/SQS/Lambda forwarders, MinIO webhooks, Ceph RGW):
  `{"Records": [{"eventName": "s3:ObjectCreated:Put", "s3": {"bucket": {"name": ...},
  "object": {"key": "url%2Dencoded"}}}]}`.
- SeaweedFS filer webhook notifications (`[notification.webhook]` in notification.toml; format
  captured from SeaweedFS 4.48, see docs/storage-events.md): one POST per filer event,
  `{"event_type": "create"|"update"|"delete"|"rename", "key": "/buckets/BUCKET/KEY",
  "message": {"old_entry": {...}, "new_entry": {"name": ..., "is_directory": ...,
  "attributes": {"file_size": ..., "mime": ..., "md5": ...}}, "new_parent_path": ...}}`.
  `key` is the raw filer path (not URL-encoded) before the event; a rename's new path is
  `new_parent_path/new_entry.name`.

Unknown shapes are a 400 (`invalid_json`, `unknown_event_format`): a misconfigured notifier
should be loud, not silently ignored, and a malformed record is the sender's error, never a 500.
A well-formed record of a key Mediaplane could never have issued (a NUL, `..`, over 1024
bytes) is skipped: it cannot be an upload of ours.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import unquote_plus

from mediaplane.errors import InvalidInput
from mediaplane.storage import InvalidKey
from mediaplane.storage.keys import validate_key

# Filer events after which a file exists at the entry's (new) path. "delete" is ignored, and so
# is any event type a later SeaweedFS may add.
_FILER_WRITES = frozenset({"create", "update", "rename"})
# SeaweedFS keeps S3 buckets under this filer directory (its default `-filer.dir.buckets`).
_BUCKETS_DIR = "buckets"
# In-progress multipart parts live under BUCKET/.uploads/: not objects yet.
_MULTIPART_DIR = ".uploads/"


def parse_body(raw: bytes) -> Any:
    """The JSON document of an event request; `InvalidInput` (`invalid_json`) if it is none."""
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        raise InvalidInput("invalid_json", "the body is not a JSON document") from None


def _malformed(message: str) -> InvalidInput:
    return InvalidInput("unknown_event_format", message)


def _object(value: Any, what: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _malformed(f"{what} must be an object")
    return value


def _ours(key: str) -> bool:
    try:
        validate_key(key)
    except InvalidKey:
        return False
    return True


def created_keys(body: Any, *, bucket: str | None) -> tuple[int, list[str]]:
    """(number of records, keys created in `bucket`) — another bucket's records are ignored."""
    if isinstance(body, dict) and isinstance(body.get("Records"), list):
        return _s3_records(body["Records"], bucket)
    if isinstance(body, dict) and "event_type" in body and "key" in body:
        return 1, _seaweed_filer(body, bucket)
    raise InvalidInput("unknown_event_format", "expected S3 event records or a filer notification")


def _s3_records(records: list[Any], bucket: str | None) -> tuple[int, list[str]]:
    keys: list[str] = []
    for record in records:
        if not isinstance(record, dict):
            raise _malformed("each record must be an object")
        name = record.get("eventName", "")
        if not isinstance(name, str):
            raise _malformed("eventName must be a string")
        if "ObjectCreated" not in name:
            continue
        s3 = _object(record.get("s3"), "s3")
        record_bucket = _object(s3.get("bucket"), "s3.bucket").get("name")
        key = _object(s3.get("object"), "s3.object").get("key")
        if not isinstance(key, str) or not key:
            raise _malformed("a created record has no s3.object.key")
        if record_bucket is not None and not isinstance(record_bucket, str):
            raise _malformed("s3.bucket.name must be a string")
        if bucket is not None and record_bucket not in (None, bucket):
            continue
        # S3 event keys are URL-encoded, with spaces as "+".
        decoded = unquote_plus(key)
        if _ours(decoded):
            keys.append(decoded)
    return len(records), keys


def _seaweed_filer(body: dict[str, Any], bucket: str | None) -> list[str]:
    event_type, path, message = body.get("event_type"), body.get("key"), body.get("message")
    if (
        not isinstance(event_type, str)
        or not isinstance(path, str)
        or not isinstance(message, dict)
    ):
        raise InvalidInput(
            "unknown_event_format", "a filer notification needs event_type, key and message"
        )
    if event_type not in _FILER_WRITES:
        return []
    entry = message.get("new_entry")
    if not isinstance(entry, dict):
        raise InvalidInput("unknown_event_format", f"a filer {event_type} has no message.new_entry")
    if entry.get("is_directory"):
        return []
    parent, name = message.get("new_parent_path"), entry.get("name")
    if not isinstance(parent, str | None) or not isinstance(name, str | None):
        raise _malformed("message.new_parent_path and new_entry.name must be strings")
    if parent is not None and name:
        # The path after the event: the same as `key` except for a rename.
        path = f"{parent.rstrip('/')}/{name}"
    return _object_key(path, bucket)


def _object_key(path: str, bucket: str | None) -> list[str]:
    # Filer paths of S3 objects are /buckets/BUCKET/KEY, the key unencoded.
    parts = path.split("/", 3)
    if len(parts) != 4 or parts[0] != "" or parts[1] != _BUCKETS_DIR:
        return []
    _, _, path_bucket, key = parts
    if not path_bucket or not key:
        return []
    # ".system" and friends are SeaweedFS's own (S3 bucket names cannot start with a dot).
    if path_bucket.startswith(".") or key.startswith(_MULTIPART_DIR):
        return []
    if bucket is not None and path_bucket != bucket:
        return []
    return [key] if _ours(key) else []

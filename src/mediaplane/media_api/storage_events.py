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

Unknown shapes are a 400: a misconfigured notifier should be loud, not silently ignored.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote_plus

from mediaplane.errors import InvalidInput

# Filer events after which a file exists at the entry's (new) path. "delete" is ignored, and so
# is any event type a later SeaweedFS may add.
_FILER_WRITES = frozenset({"create", "update", "rename"})
# SeaweedFS keeps S3 buckets under this filer directory (its default `-filer.dir.buckets`).
_BUCKETS_DIR = "buckets"
# In-progress multipart parts live under BUCKET/.uploads/: not objects yet.
_MULTIPART_DIR = ".uploads/"


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
            raise InvalidInput("unknown_event_format", "each record must be an object")
        name = str(record.get("eventName", ""))
        if "ObjectCreated" not in name:
            continue
        s3 = record.get("s3") or {}
        record_bucket = (s3.get("bucket") or {}).get("name")
        key = (s3.get("object") or {}).get("key")
        if not isinstance(key, str) or not key:
            raise InvalidInput("unknown_event_format", "a created record has no s3.object.key")
        if bucket is not None and record_bucket not in (None, bucket):
            continue
        # S3 event keys are URL-encoded, with spaces as "+".
        keys.append(unquote_plus(key))
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
    if isinstance(parent, str) and isinstance(name, str) and name:
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
    return [key]

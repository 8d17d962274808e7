"""Parse bucket event notifications into the keys of created objects.

Accepted: the S3 event format (AWS S3 → SNS/SQS/Lambda forwarders, MinIO webhooks, Ceph RGW):
`{"Records": [{"eventName": "s3:ObjectCreated:Put", "s3": {"bucket": {"name": ...},
"object": {"key": "url%2Dencoded"}}}]}`, and SeaweedFS filer webhook notifications
(`{"key": "/buckets/BUCKET/KEY", "event_type": "create", ...}` forms). Unknown shapes are a 400:
a misconfigured notifier should be loud, not silently ignored.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote_plus

from mediaplane.errors import InvalidInput


def created_keys(body: Any, *, bucket: str | None) -> tuple[int, list[str]]:
    """(number of records, keys created in `bucket`) — another bucket's records are ignored."""
    if isinstance(body, dict) and isinstance(body.get("Records"), list):
        return _s3_records(body["Records"], bucket)
    if isinstance(body, dict) and ("key" in body or "newEntry" in body or "new_entry" in body):
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
    entry = body.get("newEntry") or body.get("new_entry")
    event_type = str(body.get("event_type") or body.get("eventType") or "")
    if entry is None and event_type not in ("create", "update", ""):
        return []
    path = str(body.get("key") or "")
    if entry is not None and not path:
        directory = str(body.get("newParentPath") or body.get("new_parent_path") or "")
        path = f"{directory.rstrip('/')}/{entry.get('name', '')}"
    if entry is None and event_type == "":
        return []
    # Filer paths of S3 objects are /buckets/BUCKET/KEY.
    parts = path.lstrip("/").split("/", 2)
    if len(parts) < 3 or parts[0] != "buckets":
        return []
    if bucket is not None and parts[1] != bucket:
        return []
    return [parts[2]]

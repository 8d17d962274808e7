"""Parsing bucket event notifications into created keys."""

from __future__ import annotations

import json

import pytest

from mediaplane.errors import InvalidInput
from mediaplane.media_api.storage_events import created_keys


def record(name: str, key: str, bucket: str = "media") -> dict:
    return {"eventName": name, "s3": {"bucket": {"name": bucket}, "object": {"key": key}}}


def test_s3_records_keep_created_keys_of_our_bucket_decoded() -> None:
    body = {
        "EventName": "s3:ObjectCreated:Put",
        "Records": [
            record("s3:ObjectCreated:Put", "photos/p/1/original.jpg"),
            record("ObjectCreated:CompleteMultipartUpload", "selfies/a%7Cb/1+2.jpg"),
            record("s3:ObjectRemoved:Delete", "photos/p/2/original.jpg"),
            record("s3:ObjectCreated:Put", "photos/p/3/original.jpg", bucket="other"),
        ],
    }
    assert created_keys(body, bucket="media") == (
        4,
        ["photos/p/1/original.jpg", "selfies/a|b/1 2.jpg"],
    )
    # Local disk has no bucket: every created record counts.
    assert len(created_keys(body, bucket=None)[1]) == 3


# SeaweedFS 4.48 filer webhook bodies as `weed mini` posted them for S3 calls, trimmed (chunks,
# inode, times and `extended` removed; every other field as sent). The filer `key` is the raw path.
FILER_CREATE = {
    "event_type": "create",
    "key": "/buckets/media/photos/p 1/a+b.jpg",
    "message": {
        "new_entry": {
            "name": "a+b.jpg",
            "attributes": {
                "file_size": 5,
                "file_mode": 432,
                "mime": "image/jpeg",
                "md5": "XUFAKrxLKna5cZ2REBfFkg==",
            },
        },
        "delete_chunks": True,
        "new_parent_path": "/buckets/media/photos/p 1",
        "signatures": [-197518510],
    },
}
FILER_UPDATE = {  # the same key PUT again
    "event_type": "update",
    "key": "/buckets/media/photos/p 1/a+b.jpg",
    "message": {
        "old_entry": {"name": "a+b.jpg", "attributes": {"file_size": 5, "mime": "image/jpeg"}},
        "new_entry": {"name": "a+b.jpg", "attributes": {"file_size": 11, "mime": "image/jpeg"}},
        "delete_chunks": True,
        "new_parent_path": "/buckets/media/photos/p 1",
        "signatures": [-197518510],
    },
}
FILER_DELETE = {  # no new_entry, no new_parent_path
    "event_type": "delete",
    "key": "/buckets/media/photos/p 1/a+b.jpg",
    "message": {
        "old_entry": {"name": "a+b.jpg", "attributes": {"file_size": 11, "mime": "image/jpeg"}},
        "delete_chunks": True,
        "signatures": [-197518510],
    },
}
FILER_DIRECTORY = {  # one per new "directory" of a key, posted along with the object's create
    "event_type": "create",
    "key": "/buckets/media/photos/p 1",
    "message": {
        "new_entry": {"name": "p 1", "is_directory": True, "attributes": {"file_mode": 2147484153}},
        "new_parent_path": "/buckets/media/photos",
        "signatures": [-197518510],
    },
}
FILER_RENAME = {  # filer API `mv`: `key` is the old path, the new one is parent + name
    "event_type": "rename",
    "key": "/buckets/media/photos/a.jpg",
    "message": {
        "old_entry": {"name": "a.jpg", "attributes": {"file_size": 5, "mime": "image/jpeg"}},
        "new_entry": {"name": "renamed.jpg", "attributes": {"file_size": 5, "mime": "image/jpeg"}},
        "new_parent_path": "/buckets/media/photos",
        "signatures": [1656703431],
    },
}
FILER_MULTIPART_PART = {  # an in-progress multipart part, not an object
    "event_type": "create",
    "key": "/buckets/media/.uploads/103e85_b1c2a1/0001_e10757ea.part",
    "message": {
        "new_entry": {"name": "0001_e10757ea.part", "attributes": {"file_size": 100}},
        "delete_chunks": True,
        "new_parent_path": "/buckets/media/.uploads/103e85_b1c2a1",
        "signatures": [-197518510],
    },
}
FILER_SYSTEM_FILE = {  # SeaweedFS's own bookkeeping, written when a bucket is created
    "event_type": "create",
    "key": "/buckets/.system/owners/a/media",
    "message": {
        "new_entry": {"name": "media", "attributes": {"file_mode": 504}},
        "delete_chunks": True,
        "new_parent_path": "/buckets/.system/owners/a",
        "signatures": [-197518510],
    },
}


def moved(body: dict, old: str, new: str) -> dict:
    """`body` with every path starting `old` starting `new` instead."""
    return json.loads(json.dumps(body).replace(f'"{old}', f'"{new}'))


@pytest.mark.parametrize(
    ("body", "keys"),
    [
        (FILER_CREATE, ["photos/p 1/a+b.jpg"]),  # not URL-decoded: the filer sends it raw
        (FILER_UPDATE, ["photos/p 1/a+b.jpg"]),
        (FILER_RENAME, ["photos/renamed.jpg"]),
        (FILER_DELETE, []),
        (FILER_DIRECTORY, []),
        (FILER_MULTIPART_PART, []),
        (FILER_SYSTEM_FILE, []),
        (moved(FILER_CREATE, "/buckets/media/", "/buckets/other/"), []),
        (moved(FILER_CREATE, "/buckets/media/", "/buckets/media-2/"), []),
        (moved(FILER_CREATE, "/buckets/", "/data/"), []),
    ],
)
def test_seaweed_filer_writes_of_files_in_our_bucket_are_keys(body: dict, keys: list) -> None:
    assert created_keys(body, bucket="media") == (1, keys)


def test_seaweed_filer_without_a_bucket_takes_files_of_any_bucket() -> None:
    # Local disk has no bucket: a file in any bucket counts, SeaweedFS's own files do not.
    other = moved(FILER_CREATE, "/buckets/media/", "/buckets/other/")
    assert created_keys(other, bucket=None) == (1, ["photos/p 1/a+b.jpg"])
    assert created_keys(FILER_SYSTEM_FILE, bucket=None) == (1, [])


@pytest.mark.parametrize(
    "body",
    [
        [],
        "x",
        {"foo": 1},
        {"Records": ["x"]},
        {"Records": [{"eventName": "s3:ObjectCreated:Put"}]},
        # Filer-like, but not what SeaweedFS sends.
        {"key": "/buckets/media/a.jpg"},
        {"key": "/buckets/media/a.jpg", "newEntry": {"name": "a.jpg"}},
        {"event_type": "create", "key": "/buckets/media/a.jpg"},
        {"event_type": "create", "key": "/buckets/media/a.jpg", "message": {}},
        {"event_type": "create", "key": None, "message": FILER_CREATE["message"]},
    ],
)
def test_unknown_shapes_are_refused(body) -> None:
    with pytest.raises(InvalidInput) as err:
        created_keys(body, bucket="media")
    assert err.value.reason == "unknown_event_format"


def test_events_endpoint_needs_the_shared_secret(client) -> None:
    body: dict[str, list[object]] = {"Records": []}
    assert client.post("/v1/storage/events", json=body).status_code == 401
    wrong = {"Authorization": "Bearer nope"}
    assert client.post("/v1/storage/events", json=body, headers=wrong).status_code == 401
    # MinIO sends its auth_token as the whole header value.
    for header in ("Bearer test-events-secret", "test-events-secret"):
        resp = client.post("/v1/storage/events", json=body, headers={"Authorization": header})
        assert resp.status_code == 200 and resp.json() == {"records": 0, "settled": 0}
    bad = client.post(
        "/v1/storage/events", json={"nope": 1}, headers={"Authorization": "test-events-secret"}
    )
    assert bad.status_code == 400 and bad.json()["code"] == "unknown_event_format"


@pytest.mark.parametrize("settings_overrides", [{"storage_events_secret": None}])
def test_events_endpoint_is_off_without_a_secret(client) -> None:
    resp = client.post(
        "/v1/storage/events", json={"Records": []}, headers={"Authorization": "Bearer anything"}
    )
    assert resp.status_code == 403 and resp.json()["code"] == "storage_events_disabled"


EVENTS_AUTH = {"Authorization": "Bearer test-events-secret", "Content-Type": "application/json"}
CREATED = "s3:ObjectCreated:Put"


@pytest.mark.parametrize("backend", ["local", "s3"])
@pytest.mark.parametrize(
    "raw",
    [
        b"{not json",
        b"",
        b"\xff\xfe garbage",
        b"[]",
        b'"Records"',
        b"null",
        b'{"Records": "x"}',
        b'{"Records": {"0": {}}}',
        b'{"Records": [1, 2]}',
        json.dumps({"Records": [{"eventName": CREATED, "s3": "x"}]}).encode(),
        json.dumps({"Records": [{"eventName": CREATED, "s3": {"object": "k"}}]}).encode(),
        json.dumps({"Records": [{"eventName": CREATED, "s3": {"object": {"key": 7}}}]}).encode(),
        json.dumps(
            {"Records": [{"eventName": CREATED, "s3": {"bucket": "b", "object": {"key": "k"}}}]}
        ).encode(),
        json.dumps(
            {"Records": [{"eventName": ["x"], "s3": {"object": {"key": "photos/a.jpg"}}}]}
        ).encode(),
        json.dumps({"event_type": 1, "key": "/buckets/media/a.jpg", "message": {}}).encode(),
        json.dumps(
            {
                "event_type": "create",
                "key": "/buckets/media/a.jpg",
                "message": {"new_entry": {"name": 5}, "new_parent_path": ["x"]},
            }
        ).encode(),
        json.dumps(
            {"event_type": "create", "key": "/buckets/media/a.jpg", "message": {"new_entry": []}}
        ).encode(),
    ],
)
def test_malformed_events_with_the_right_secret_are_400(client, raw: bytes, backend: str) -> None:
    resp = client.post("/v1/storage/events", content=raw, headers=EVENTS_AUTH)
    assert resp.status_code == 400, resp.text
    assert resp.headers["content-type"] == "application/problem+json"
    assert resp.json()["code"] in ("invalid_json", "unknown_event_format")


@pytest.mark.parametrize("backend", ["local", "s3"])
@pytest.mark.parametrize("key", ["a%00b", "..%2F..%2Fetc%2Fpasswd", "%C0", "x" * 2000])
def test_events_for_keys_we_never_issue_are_ignored(client, key: str, backend: str) -> None:
    body = {"Records": [{"eventName": CREATED, "s3": {"object": {"key": key}}}]}
    resp = client.post("/v1/storage/events", json=body, headers=EVENTS_AUTH)
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"records": 1, "settled": 0}

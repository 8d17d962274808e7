"""A real notifier: SeaweedFS's filer webhook drives `POST /v1/storage/events` end to end.

A second `weed mini` (the session one has no notification.toml) posts its filer events to the
app, served by a real uvicorn on 127.0.0.1. The photographer PUTs to the presigned URL, nobody
calls `complete` and the sweeper is off: the upload settles because SeaweedFS said so.

The notification.toml here is the one docs/storage-events.md recommends.
"""

from __future__ import annotations

import json
import shutil
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from mediaplane.runtime import Runtime
from mediaplane.settings import Settings
from mediaplane.uploads import UploadStatus
from tests.fixtures.s3 import S3ServerInfo, log_tail, s3_client, weed_mini
from tests.media_api.test_upload_flow import PHOTO, HandOffRecorder, photographer, upload_row

EVENTS_SECRET = "seaweed-webhook-secret"
BUCKET = "media-webhook"
SETTLE_TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True)
class WebhookWeed:
    s3: S3ServerInfo
    app_socket: socket.socket  # listening already: the webhook's endpoint, the test serves on it
    app_url: str
    output: Path  # weed's stdout + stderr


def notification_toml(endpoint: str) -> str:
    return f"""\
[notification.webhook]
enabled = true
endpoint = "{endpoint}"
bearer_token = "{EVENTS_SECRET}"
event_types = ["create", "update", "rename"]
path_prefixes = ["/buckets/{BUCKET}/"]
timeout_seconds = 5
"""


@pytest.fixture(scope="module")
def webhook_weed() -> Iterator[WebhookWeed]:
    """`weed mini` on free 127.0.0.1 ports, its filer webhook aimed at a socket we listen on."""
    base = Path(tempfile.mkdtemp(prefix="mediaplane-weed-webhook-"))
    app_socket = socket.socket()
    try:
        # Bound and listening before weed starts, so the webhook's endpoint is ours for sure.
        app_socket.bind(("127.0.0.1", 0))
        app_socket.listen(64)
        app_url = f"http://127.0.0.1:{app_socket.getsockname()[1]}"
        config_dir = base / "config"
        config_dir.mkdir()
        (config_dir / "notification.toml").write_text(
            notification_toml(f"{app_url}/v1/storage/events")
        )
        with weed_mini(base, config_dir=config_dir) as weed:
            s3_client(weed.server).create_bucket(Bucket=BUCKET)
            yield WebhookWeed(
                s3=weed.server, app_socket=app_socket, app_url=app_url, output=weed.output
            )
    finally:
        app_socket.close()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def settings_overrides(webhook_weed: WebhookWeed) -> dict[str, object]:
    s3 = webhook_weed.s3
    return {
        "storage_url": f"s3://{BUCKET}",
        "s3_endpoint_url": s3.endpoint_url,
        "s3_region": s3.region,
        "s3_access_key_id": s3.access_key_id,
        "s3_secret_access_key": s3.secret_access_key,
        "s3_path_style": True,
        "storage_events_secret": EVENTS_SECRET,
        "public_url": webhook_weed.app_url,
        "upload_sweep_interval_seconds": 0,  # no sweeper thread: only the webhook can settle
    }


@dataclass(frozen=True)
class PostedEvent:
    authorization: str
    body: Any
    status: int


class EventLog:
    """ASGI wrapper around the app keeping what the notifier posted and what it got back."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.events: list[PostedEvent] = []
        self._lock = threading.Lock()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] != "/v1/storage/events":
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        status = 0

        async def receive_body() -> Any:
            message = await receive()
            if message["type"] == "http.request":
                chunks.append(message.get("body", b""))
            return message

        async def send_status(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        await self.app(scope, receive_body, send_status)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        event = PostedEvent(headers.get("authorization", ""), json.loads(b"".join(chunks)), status)
        with self._lock:
            self.events.append(event)

    def for_path(self, path: str) -> list[PostedEvent]:
        with self._lock:
            return [
                e for e in self.events if isinstance(e.body, dict) and e.body.get("key") == path
            ]


@pytest.fixture
def served(app: FastAPI, webhook_weed: WebhookWeed) -> Iterator[EventLog]:
    """The test's app behind a real uvicorn on the socket the webhook posts to."""
    log = EventLog(app)
    server = uvicorn.Server(uvicorn.Config(log, log_level="warning", lifespan="on"))
    # A duplicate: uvicorn closes its socket at shutdown, the module's one keeps listening.
    sockets = [webhook_weed.app_socket.dup()]
    thread = threading.Thread(target=server.run, kwargs={"sockets": sockets}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield log
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def wait_for(predicate: Any, timeout: float = SETTLE_TIMEOUT_SECONDS) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return bool(predicate())


def test_seaweedfs_webhook_settles_an_upload_without_complete_or_sweeper(
    served: EventLog,
    app: FastAPI,
    runtime: Runtime,
    settings: Settings,
    make_token: Any,
    webhook_weed: WebhookWeed,
) -> None:
    assert settings.upload_sweep_interval_seconds == 0
    recorder = HandOffRecorder(app)
    headers = photographer(make_token)
    with httpx.Client(base_url=webhook_weed.app_url, headers=headers, timeout=10) as api:
        resp = api.post("/v1/photos/upload-url", json={"projectId": str(uuid.uuid4())})
        assert resp.status_code == 201, resp.text
        photo = resp.json()
        assert photo["uploadUrl"].startswith(webhook_weed.s3.endpoint_url)
        put = httpx.put(
            photo["uploadUrl"], content=PHOTO, headers={"Content-Type": "image/jpeg"}, timeout=10
        )
        assert put.status_code == 200, put.text

        def status() -> str:
            view = api.get(f"/v1/photos/{photo['photoId']}")
            assert view.status_code == 200, view.text
            return str(view.json()["status"])

        assert wait_for(lambda: status() == "uploaded"), (
            f"still {status()!r} after {SETTLE_TIMEOUT_SECONDS:.0f} s; events posted: "
            f"{[e.body.get('key') for e in served.events]}; weed log tail:\n"
            f"{log_tail(webhook_weed.output)}"
        )
        row = upload_row(runtime, photo["photoId"])
        assert row.status == UploadStatus.UPLOADED
        assert row.completed_via == "webhook"
        assert row.size == len(PHOTO)
        assert recorder.calls == [uuid.UUID(photo["photoId"])]

        # What SeaweedFS really sent for the object: a bearer token and the raw filer path.
        path = f"/buckets/{BUCKET}/{photo['key']}"
        created = served.for_path(path)
        assert [e.body["event_type"] for e in created] == ["create"]
        assert created[0].authorization == f"Bearer {EVENTS_SECRET}"
        assert created[0].body["message"]["new_entry"]["attributes"]["mime"] == "image/jpeg"

        # The same bytes PUT again: an "update" is posted, accepted, and hands nothing on again.
        again = httpx.put(
            photo["uploadUrl"], content=PHOTO, headers={"Content-Type": "image/jpeg"}, timeout=10
        )
        assert again.status_code == 200
        assert wait_for(lambda: len(served.for_path(path)) == 2)
        assert served.for_path(path)[1].body["event_type"] == "update"
        assert recorder.calls == [uuid.UUID(photo["photoId"])]
        assert status() == "uploaded"

    # Every post (directories of the key included) was accepted: none retried or dead-lettered.
    assert served.events and {e.status for e in served.events} == {200}
    assert "failed to send message to webhook" not in webhook_weed.output.read_text(
        errors="replace"
    )


def test_seaweedfs_webhook_undoes_a_late_write_to_a_settled_photo(
    served: EventLog, runtime: Runtime, make_token: Any, webhook_weed: WebhookWeed
) -> None:
    # Issue 9: the URL outlives the upload; the filer's own "update" event is enough to put the
    # accepted bytes back, with no sweeper and no client involved.
    headers = photographer(make_token)
    with httpx.Client(base_url=webhook_weed.app_url, headers=headers, timeout=10) as api:
        photo = api.post("/v1/photos/upload-url", json={"projectId": str(uuid.uuid4())}).json()
        jpeg = {"Content-Type": "image/jpeg"}
        assert httpx.put(photo["uploadUrl"], content=PHOTO, headers=jpeg).status_code == 200
        assert wait_for(lambda: upload_row(runtime, photo["photoId"]).status == "uploaded")

        html = b"<html><script>alert(1)</script></html>"
        assert httpx.put(photo["uploadUrl"], content=html, headers=jpeg).status_code == 200
        assert wait_for(lambda: runtime.store.read(photo["key"]) == PHOTO), (
            f"the late write stayed; weed log tail:\n{log_tail(webhook_weed.output)}"
        )
        view = api.get(f"/v1/photos/{photo['photoId']}").json()
        assert httpx.get(view["downloads"]["original"]["url"]).content == PHOTO
    assert {e.status for e in served.events} == {200}

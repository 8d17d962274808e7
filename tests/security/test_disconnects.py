"""Point 6 of issue 9: a client that goes away mid-upload is a client disconnect, not a crash.

A real socket sends half a body to a real uvicorn and closes. The server logs one line naming
the disconnect (no "Exception in ASGI application", no traceback) and leaves no file behind.
"""

from __future__ import annotations

import logging
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from fastapi import FastAPI

from mediaplane.media_api import service as media_service
from mediaplane.runtime import Runtime
from tests.images_api.helpers import HOST, multipart_body, signed_upload_url
from tests.security.conftest import limits, live_server, request_head

PHOTO = (Path(__file__).parents[1] / "fixtures" / "faces" / "obama_2.jpg").read_bytes()


def wait_for(condition, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail("condition not met in time")
        time.sleep(0.02)


def files_under(path: Path) -> list[Path]:
    return [p for p in path.rglob("*") if p.is_file()] if path.exists() else []


def assert_logged_as_a_disconnect(caplog: pytest.LogCaptureFixture) -> None:
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "Exception in ASGI application" not in text
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], text
    disconnects = [r for r in caplog.records if "client disconnected" in r.getMessage()]
    assert len(disconnects) == 1, text
    assert disconnects[0].levelno in (logging.INFO, logging.WARNING)


def test_a_storage_put_cut_mid_body_is_logged_as_a_disconnect(
    app: FastAPI, runtime: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    # A real pending upload: the route asks the uploads table before it takes any bytes.
    with runtime.database.transaction() as session:
        upload, issued = media_service.create_photo_upload(
            session,
            runtime.store,
            runtime.settings,
            photographer_id="photographer-1",
            project_id=uuid.uuid4(),
            now=datetime.now(UTC),
        )
    key = upload.key
    url = urlsplit(issued)
    objects = runtime.settings.local_storage_root
    before = files_under(objects)
    with live_server(app, limits()) as server:
        sock = server.connect()
        headers = {"Content-Type": "image/jpeg", "Content-Length": str(len(PHOTO))}
        sock.sendall(request_head("PUT", f"{url.path}?{url.query}", headers=headers))
        sock.sendall(PHOTO[: len(PHOTO) // 2])
        time.sleep(0.2)
        sock.close()
        wait_for(lambda: any("client disconnected" in r.getMessage() for r in caplog.records))
        wait_for(lambda: server.open_connections() == 0)
        time.sleep(0.2)
    assert runtime.store.head(key) is None
    assert files_under(objects) == before
    assert_logged_as_a_disconnect(caplog)


def test_an_images_upload_cut_mid_body_is_logged_as_a_disconnect(
    app: FastAPI, runtime: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    url = urlsplit(signed_upload_url(app, object_id="cut"))
    body = multipart_body(("file", PHOTO))
    spool = runtime.settings.data_dir / "tmp"
    with live_server(app, limits()) as server:
        sock = server.connect()
        headers = {
            "Content-Type": "multipart/form-data; boundary=b0undary",
            "Content-Length": str(len(body)),
        }
        sock.sendall(request_head("POST", f"{url.path}?{url.query}", host=HOST, headers=headers))
        sock.sendall(body[: len(body) // 2])
        time.sleep(0.2)
        sock.close()
        wait_for(lambda: any("client disconnected" in r.getMessage() for r in caplog.records))
        wait_for(lambda: server.open_connections() == 0)
        time.sleep(0.2)
    assert files_under(spool) == []
    assert files_under(runtime.settings.local_storage_root) == []
    assert_logged_as_a_disconnect(caplog)

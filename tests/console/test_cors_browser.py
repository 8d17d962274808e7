"""CORS as Chromium enforces it: a page on a second origin (served by this test) uploads to the
Media API through a presigned local PUT and to the Images server, and reads both back; the same
page served from an origin not in CORS_ALLOWED_ORIGINS is refused by the browser."""

from __future__ import annotations

import base64
import socket
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.console.conftest import DESKTOP, ConsoleServer
from tests.imaging import factories

PAGE = b"<!doctype html><html><head><title>other origin</title></head><body>app</body></html>"

# Runs in the page: every fetch is cross-origin, so the browser's CORS checks apply.
UPLOAD_BOTH = """async ({api, photographer, user, png}) => {
    const bytes = Uint8Array.from(atob(png), (c) => c.charCodeAt(0));
    const auth = (token) => ({Authorization: `Bearer ${token}`});
    const json = {'Content-Type': 'application/json'};
    const issued = await (await fetch(`${api}/v1/photos/upload-url`, {
        method: 'POST',
        headers: {...auth(photographer), ...json},
        body: JSON.stringify({projectId: crypto.randomUUID(), contentType: 'image/png'}),
    })).json();
    const put = await fetch(issued.uploadUrl, {
        method: 'PUT', headers: issued.headers, body: bytes,
    });
    await fetch(`${api}/v1/photos/${issued.photoId}/complete`, {
        method: 'POST', headers: auth(photographer),
    });
    const view = await (await fetch(`${api}/v1/photos/${issued.photoId}`, {
        headers: auth(photographer),
    })).json();
    const original = await fetch(view.downloads.original.url);
    const mediaBack = new Uint8Array(await original.arrayBuffer());

    const signed = await (await fetch(`${api}/api/images/upload`, {
        method: 'POST', headers: auth(user),
    })).json();
    const form = new FormData();
    form.append('file', new Blob([bytes], {type: 'image/png'}), 'me.png');
    const stored = await (await fetch(signed.result.url, {method: 'POST', body: form})).json();
    const objectPath = stored.result.url.replace('authgearimages:///', '');
    const profile = await fetch(`${api}/_images/${objectPath}/profile`);
    const profileBytes = new Uint8Array(await profile.arrayBuffer());
    return {
        put: put.status,
        etag: put.headers.get('ETag'),
        mediaType: original.headers.get('Content-Type'),
        mediaSame: mediaBack.length === bytes.length && mediaBack.every((b, i) => b === bytes[i]),
        profileType: profile.headers.get('Content-Type'),
        profileJpeg: profileBytes[0] === 0xff && profileBytes[1] === 0xd8,
    };
}"""

REFUSED = """async ({api, photographer}) => {
    try {
        await fetch(`${api}/v1/photos/upload-url`, {
            method: 'POST',
            headers: {Authorization: `Bearer ${photographer}`, 'Content-Type': 'application/json'},
            body: JSON.stringify({projectId: crypto.randomUUID()}),
        });
        return 'answered';
    } catch (error) {
        return `refused: ${error}`;
    }
}"""


class _Page(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(PAGE)))
        self.end_headers()
        self.wfile.write(PAGE)

    def log_message(self, format: str, *args: object) -> None:
        pass


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def origins() -> Iterator[tuple[str, str]]:
    """Two page servers on their own ports: two origins, the first listed, the second not."""
    servers = [ThreadingHTTPServer(("127.0.0.1", 0), _Page) for _ in range(2)]
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    yield tuple(f"http://127.0.0.1:{s.server_address[1]}" for s in servers)  # type: ignore[misc]
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def settings_overrides(server_socket: socket.socket, origins: tuple[str, str]) -> dict:
    port = server_socket.getsockname()[1]
    return {"public_url": f"http://127.0.0.1:{port}", "cors_allowed_origins": origins[0]}


def test_a_page_on_a_listed_origin_uploads_and_reads_back_another_is_refused(
    browser, console_server: ConsoleServer, origins: tuple[str, str], make_token
) -> None:
    args = {
        "api": console_server.url,
        "photographer": make_token(aud="media", roles=["photographer"], sub="pat"),
        "user": make_token(aud="media", roles=["user"], sub=f"user-{uuid.uuid4().hex[:6]}"),
        "png": base64.b64encode(factories.png_bytes(320, 240)).decode(),
    }
    context = browser.new_context(viewport=DESKTOP)
    try:
        listed = context.new_page()
        listed.goto(origins[0])
        result = listed.evaluate(UPLOAD_BOTH, args)

        unlisted = context.new_page()
        blocked: list[str] = []
        unlisted.on("console", lambda m: blocked.append(m.text) if m.type == "error" else None)
        unlisted.goto(origins[1])
        refused = unlisted.evaluate(REFUSED, args)
    finally:
        context.close()

    assert result == {
        "put": 200,
        "etag": result["etag"],
        "mediaType": "image/png",
        "mediaSame": True,
        "profileType": "image/jpeg",
        "profileJpeg": True,
    }
    assert result["etag"]  # exposed to the page (Access-Control-Expose-Headers)
    assert refused.startswith("refused: TypeError"), refused
    assert any("CORS" in message for message in blocked), blocked

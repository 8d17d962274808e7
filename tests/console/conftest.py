"""The console's harness: the real app behind a real uvicorn on 127.0.0.1, driven by Chromium.

Each test gets a fresh database (the `database_url` fixture), its own server on a free port with
an in-process job worker and the local face engine, and `PUBLIC_URL` set to that server, so the
presigned local-storage URLs the browser uploads to lead back to it. One Chromium per module.
"""

from __future__ import annotations

import base64
import mimetypes
import os
import re
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import uvicorn
from fastapi import FastAPI

from mediaplane.app import create_app
from mediaplane.runtime import Runtime

if TYPE_CHECKING:
    from playwright.sync_api import Browser, ConsoleMessage, Page

CHROMIUM = Path("/usr/bin/chromium")
# Without these, Chromium keeps trying the network (updates, sync, QUIC probes) in a sandbox it
# cannot set up here. Playwright's `launch` already gives it a fresh temporary profile.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
# The tracked screenshots of docs/ change only on purpose (`make screenshots`); a test run
# writes its own into var/ (ignored), for a look at what the browser saw.
REPOSITORY = Path(__file__).parents[2]


def screenshots_folder(environ: Mapping[str, str]) -> Path:
    if environ.get("MEDIAPLANE_REFRESH_SCREENSHOTS") == "1":
        return REPOSITORY / "docs" / "screenshots"
    return REPOSITORY / "var" / "screenshots"


SCREENSHOTS = screenshots_folder(os.environ)
FACES = Path(__file__).parents[1] / "fixtures" / "faces"
HOME_BY_ROLE = {"user": "attendee", "photographer": "photographer", "operator": "operator"}


def _unavailable(why: str) -> None:
    # In CI the browser is a requirement (`make test` installs it), not an optional extra.
    if os.environ.get("CI"):
        pytest.fail(f"{why}; CI must run the console tests (scripts/ensure-chromium.sh)")
    pytest.skip(f"{why}: install it with scripts/ensure-chromium.sh to run the console tests")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    # Module scope, not session: while sync Playwright runs, its event loop is the running loop
    # of the main thread, and every later test calling asyncio.run() (workers, CLI) would fail.
    if not CHROMIUM.exists():
        _unavailable(f"{CHROMIUM} is missing")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("the playwright package is not installed")
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def server_socket() -> Iterator[socket.socket]:
    """A listening socket on a free port, bound before the settings need its URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    yield sock
    sock.close()


@pytest.fixture
def settings_overrides(server_socket: socket.socket) -> dict[str, object]:
    port = server_socket.getsockname()[1]
    return {"public_url": f"http://127.0.0.1:{port}", "face_engine": "local"}


@dataclass
class ConsoleServer:
    url: str
    app: FastAPI


@pytest.fixture
def console_server(runtime: Runtime, server_socket: socket.socket) -> Iterator[ConsoleServer]:
    """The whole service, job worker included, serving on `server_socket`."""
    app = create_app(
        runtime.settings, database=runtime.database, store=runtime.store, run_worker=True
    )
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [server_socket]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield ConsoleServer(url=runtime.settings.public_url, app=app)
    finally:
        server.should_exit = True
        thread.join(timeout=15)


@dataclass
class ConsoleErrors:
    """Error messages of the browser's console (failed loads included: a 404 is one) that a
    test did not announce with `expect`; any left fails the test."""

    seen: list[str]
    expected: list[re.Pattern[str]]

    def expect(self, pattern: str) -> None:
        """An error this test provokes on purpose (an aborted PUT, a refused file)."""
        self.expected.append(re.compile(pattern))

    def unexpected(self) -> list[str]:
        return [m for m in self.seen if not any(p.search(m) for p in self.expected)]


@pytest.fixture
def console_errors() -> ConsoleErrors:
    return ConsoleErrors(seen=[], expected=[])


@pytest.fixture
def page(
    browser: Browser, console_server: ConsoleServer, console_errors: ConsoleErrors
) -> Iterator[Page]:
    context = browser.new_context(viewport=DESKTOP, base_url=console_server.url)
    context.set_default_timeout(30_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            location = message.location.get("url", "")
            console_errors.seen.append(f"{message.text} ({location})")

    page.on("console", on_console)
    yield page
    context.close()
    assert not errors, f"uncaught errors in the page: {errors}"
    unexpected = console_errors.unexpected()
    assert not unexpected, f"errors in the browser console: {unexpected}"


class Console:
    """What a person does in the console, in their words; tests read as the flow they check."""

    def __init__(self, page: Page) -> None:
        self.page = page

    def screen(self, name: str) -> Any:
        return self.page.locator(f'[data-screen="{name}"]:not([hidden])')

    def open(self, name: str) -> Any:
        self.page.goto(f"/#/{name}")
        screen = self.screen(name)
        screen.wait_for()
        return screen

    def sign_in_as(self, role: str, subject: str | None = None) -> Any:
        self.open("sign-in")
        if subject:
            self.page.get_by_text("Another subject").click()
            self.page.get_by_label("Subject (the token’s sub)").fill(subject)
        self.page.locator(f'button.identity-choice[data-role="{role}"]').click()
        screen = self.screen(HOME_BY_ROLE[role])
        screen.wait_for()
        return screen

    def new_project(self) -> str:
        self.page.get_by_role("button", name="New project").click()
        return self.screen("photographer").locator("input[name=projectId]").input_value()

    def drop_files(self, selector: str, files: list[Path]) -> None:
        """Drag and drop, as a browser delivers it: a `drop` event carrying a DataTransfer."""
        payload = [
            {
                "name": f.name,
                "data": base64.b64encode(f.read_bytes()).decode(),
                # What a browser's file picker says the file is (from its extension).
                "type": mimetypes.guess_type(f.name)[0] or "",
            }
            for f in files
        ]
        transfer = self.page.evaluate_handle(
            """(files) => {
                const dt = new DataTransfer();
                for (const f of files) {
                    const bytes = Uint8Array.from(atob(f.data), (c) => c.charCodeAt(0));
                    dt.items.add(new File([bytes], f.name, { type: f.type }));
                }
                return dt;
            }""",
            payload,
        )
        self.page.dispatch_event(selector, "drop", {"dataTransfer": transfer})

    def wait_for_images(self) -> None:
        """Every shown image has loaded and is decoded: screenshots show what a person sees."""
        shown = """[...document.images]
            .filter((img) => img.offsetParent !== null && img.getAttribute('src'))"""
        self.page.wait_for_function(
            f"() => {shown}.every((img) => img.complete && img.naturalWidth > 0)",
            timeout=10_000,
        )
        self.page.evaluate(f"() => Promise.all({shown}.map((img) => img.decode()))")

    def screenshots(self, name: str, *, full_page: bool = True) -> None:
        """NAME-desktop.png and NAME-phone.png in SCREENSHOTS (whole pages unless a dialog is
        open: its backdrop covers the viewport only)."""
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        for label, size in (("desktop", DESKTOP), ("phone", PHONE)):
            self.page.set_viewport_size(size)
            self.wait_for_images()
            without_alt = self.page.evaluate(
                """() => [...document.images]
                    .filter((img) => img.offsetParent !== null && !img.alt.trim())
                    .map((img) => img.outerHTML)"""
            )
            assert not without_alt, f"images without alt text on {name}: {without_alt}"
            self.page.screenshot(path=SCREENSHOTS / f"{name}-{label}.png", full_page=full_page)
        self.page.set_viewport_size(DESKTOP)


@pytest.fixture
def console(page: Page) -> Console:
    return Console(page)

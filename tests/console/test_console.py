"""The web console, in Chromium against the real service: each flow of the product through the
public API, as a person does it, with screenshots of every screen for docs/console.md."""

from __future__ import annotations

import contextlib
import re
from pathlib import Path
from urllib.parse import urlsplit

import pyvips
from fastapi import FastAPI
from fastapi.testclient import TestClient

from mediaplane.app import create_app
from mediaplane.runtime import Runtime
from tests.console.conftest import FACES, Console, ConsoleErrors, ConsoleServer

PHOTOS = [FACES / name for name in ("obama_2.jpg", "biden_2.jpg", "obama_and_biden.jpg")]
SETTLE_MS = 60_000
DEV_PHOTOGRAPHER = "33333333-3333-3333-3333-333333333333"  # console/routes.py DEV_SUBJECTS
PROFILE_PATH = re.compile(r"^/_images/app/[A-Za-z0-9_-]{22}/profile$")

# Without playwright, the `browser` fixture skips the browser tests (fails them in CI), saying why.
with contextlib.suppress(ImportError):
    from playwright.sync_api import Page, Route, expect


def upload_photos(console: Console, files: list[Path]) -> str:
    """As a photographer: a new project, these files; wait until every one has settled."""
    project = console.new_project()
    console.page.set_input_files("#photo-files", [str(f) for f in files])
    rows = console.page.locator("#uploads li.upload")
    expect(rows).to_have_count(len(files))
    expect(console.page.locator("#uploads li.upload[data-state=done]")).to_have_count(
        len(files), timeout=SETTLE_MS
    )
    return project


def test_photographer_uploads_photos_and_sees_their_thumbnails(console: Console) -> None:
    console.sign_in_as("photographer")
    calls: list[str] = []
    console.page.on("request", lambda r: calls.append(f"{r.method} {urlsplit(r.url).path}"))
    upload_photos(console, PHOTOS)
    images = console.page.locator("#project-grid li.tile img")
    expect(images).to_have_count(3)
    # Each tile names its file (the grid's caption) and describes its image (alt text).
    names = {photo.name for photo in PHOTOS}
    assert {img.get_attribute("alt") for img in images.all()} == names
    captions = console.page.locator("#project-grid .tile-caption").all_inner_texts()
    assert {caption.split(" · ")[0] for caption in captions} == names
    # The batch's URLs came in one request, not one per photo.
    assert calls.count("POST /v1/photos/upload-urls") == 1
    assert "POST /v1/photos/upload-url" not in calls
    for row in console.page.locator("#uploads li.upload").all():
        expect(row.locator("progress")).to_have_attribute("value", "1")
        expect(row.locator(".step[data-status=done]")).to_have_count(3)
    console.screenshots("photographer")

    console.page.locator("#project-grid .tile-open").first.click()
    viewer = console.page.locator("dialog.viewer")
    expect(viewer).to_be_visible()
    expect(viewer.get_by_role("link", name="Original")).to_be_visible()
    console.screenshots("photographer-viewer", full_page=False)
    console.page.keyboard.press("Escape")
    expect(viewer).to_be_hidden()

    # The group photo: its three faces (two men and the child) boxed on the opened photo.
    group = console.page.locator("#project-grid li.tile", has_text="3 faces")
    group.locator(".tile-open").click()
    expect(viewer.locator(".face-box")).to_have_count(3)
    console.screenshots("photographer-faces", full_page=False)
    console.page.keyboard.press("Escape")


def test_attendee_finds_exactly_their_photos_and_revoking_empties_them(
    console: Console,
) -> None:
    console.sign_in_as("photographer")
    project = upload_photos(console, PHOTOS)

    screen = console.sign_in_as("user")
    console.screenshots("attendee-consent")
    # No selfie can be picked before the grant is recorded (the API would answer 403).
    expect(console.page.locator("#consent-status")).to_have_attribute("data-consent", "none")
    expect(console.page.locator("#selfie-file")).to_be_disabled()
    screen.get_by_role("button", name="I agree: grant consent").click()
    expect(console.page.locator("#consent-status")).to_have_attribute("data-consent", "active")
    expect(console.page.locator("#selfie-file")).to_be_enabled()
    console.page.set_input_files("#selfie-file", str(FACES / "obama_1.jpg"))
    expect(console.page.locator("#face-status")).to_have_attribute(
        "data-face", "indexed", timeout=SETTLE_MS
    )
    expect(screen.locator("input[name=projectId]")).to_have_value(project)
    tiles = console.page.locator("#my-photos li.tile")
    expect(tiles).to_have_count(2)
    for tile in tiles.all():
        assert float(tile.get_attribute("data-similarity") or 0) >= 50
    console.screenshots("attendee")
    # Opened, a photo shows one box: the attendee's own face, and nobody else's.
    tiles.first.locator(".tile-open").click()
    viewer = console.page.locator("dialog.viewer")
    expect(viewer.locator(".face-box.mine")).to_have_count(1)
    expect(viewer.locator(".face-box")).to_have_count(1)
    console.page.keyboard.press("Escape")

    screen.get_by_role("button", name="Revoke consent and erase my face data").click()
    # Revoking asks first: cancelling keeps everything.
    console.page.get_by_role("alertdialog").get_by_role("button", name="Cancel").click()
    expect(console.page.locator("#consent-status")).to_have_attribute("data-consent", "active")
    expect(tiles).to_have_count(2)
    screen.get_by_role("button", name="Revoke consent and erase my face data").click()
    console.screenshots("attendee-revoke-confirm", full_page=False)
    console.page.get_by_role("alertdialog").get_by_role("button", name="Revoke and erase").click()
    expect(console.page.locator("#consent-status")).to_have_attribute("data-consent", "none")
    expect(tiles).to_have_count(0)
    expect(console.page.locator("#face-status")).to_have_attribute("data-face", "erased")
    console.screenshots("attendee-revoked")


def test_projects_by_name_from_creation_to_deletion(console: Console) -> None:
    """An operator creates a project and assigns a photographer; the photographer picks it by
    name and uploads; an attendee finds the event without an id and says "not me" once; the
    operator deletes the project, each deletion confirmed first."""
    console.sign_in_as("operator")
    console.page.get_by_label("Name").fill("Summer gala")
    console.page.get_by_role("button", name="Create project").click()
    gala = console.page.locator("#projects-list > li", has_text="Summer gala")
    expect(gala).to_have_count(1)
    gala.get_by_label("Photographer (user id)").fill(DEV_PHOTOGRAPHER)
    gala.get_by_role("button", name="Assign").click()
    expect(gala.locator(".photographers")).to_contain_text(DEV_PHOTOGRAPHER)
    console.screenshots("operator-projects")

    screen = console.sign_in_as("photographer")
    screen.get_by_label("Your projects").select_option(label="Summer gala")
    project = screen.locator("input[name=projectId]").input_value()
    console.page.set_input_files("#photo-files", [str(f) for f in PHOTOS[:2]])
    expect(console.page.locator("#uploads li.upload[data-state=done]")).to_have_count(
        2, timeout=SETTLE_MS
    )
    grid = console.page.locator("#project-grid li.tile")
    expect(grid).to_have_count(2)

    attendee = console.sign_in_as("user", subject="obama-at-the-gala")
    attendee.get_by_role("button", name="I agree: grant consent").click()
    # The grant is recorded before the selfie is asked for (else 403 consent_required).
    expect(console.page.locator("#consent-status")).to_have_attribute("data-consent", "active")
    console.page.set_input_files("#selfie-file", str(FACES / "obama_1.jpg"))
    expect(console.page.locator("#face-status")).to_have_attribute(
        "data-face", "indexed", timeout=SETTLE_MS
    )
    # The event is offered by name, with the count: no id typed anywhere.
    events = attendee.get_by_label("Your projects")
    expect(events.locator("option", has_text="Summer gala (1 photo of you)")).to_have_count(1)
    tiles = console.page.locator("#my-photos li.tile")
    expect(tiles).to_have_count(1)
    tiles.first.get_by_role("button", name="Not me").click()
    console.page.get_by_role("alertdialog").get_by_role("button", name="Not me: hide it").click()
    expect(tiles).to_have_count(0)

    console.sign_in_as("photographer")
    photo = console.page.locator("#project-grid li.tile").first
    photo.get_by_role("button", name="Delete").click()
    console.page.get_by_role("alertdialog").get_by_role("button", name="Delete photo").click()
    expect(console.page.locator("#project-grid li.tile")).to_have_count(1)

    console.sign_in_as("operator")
    gala = console.page.locator("#projects-list > li", has_text="Summer gala")
    gala.get_by_role("button", name="Delete project").click()
    console.screenshots("operator-delete-confirm", full_page=False)
    console.page.get_by_role("alertdialog").get_by_role("button", name="Delete project").click()
    expect(console.page.locator("#projects-status")).to_contain_text(
        "deleted: 1 photos erased", timeout=SETTLE_MS
    )
    expect(console.page.locator("#projects-list > li", has_text="Summer gala")).to_have_count(0)
    assert project


def test_operator_uploads_a_profile_picture_and_sees_it(console: Console) -> None:
    console.sign_in_as("operator")
    expect(console.page.locator("#profile-status")).to_have_text("No profile picture yet.")
    console.page.set_input_files("#profile-file", str(FACES / "biden_1.jpg"))
    picture = console.page.locator("#profile-picture")
    expect(picture).to_be_visible()
    console.page.wait_for_function(
        "() => document.getElementById('profile-picture').naturalWidth > 0"
    )
    assert "/_storage/operators/" in (picture.get_attribute("src") or "")
    console.screenshots("operator")


def test_a_failed_file_shows_its_reason_and_the_batch_carries_on(
    console: Console, console_errors: ConsoleErrors, tmp_path: Path
) -> None:
    # The browser reports the PUT broken off on purpose and the refused text file.
    console_errors.expect(r"net::ERR_FAILED.*/_storage/")
    console_errors.expect(r"status of 4\d\d.*/_storage/")
    console.sign_in_as("photographer")
    project = console.new_project()
    text = tmp_path / "not-a-photo.jpg"
    text.write_text("these are words, not pixels\n" * 50)
    # The first PUT of biden_2.jpg breaks off, as on a flaky network.
    flaky = PHOTOS[1]
    broken: list[str] = []

    def break_once(route: Route) -> None:
        body = route.request.post_data_buffer or b""
        if route.request.method == "PUT" and len(body) == flaky.stat().st_size and not broken:
            broken.append(route.request.url)
            route.abort()
        else:
            route.continue_()

    console.page.route("**/_storage/**", break_once)
    console.drop_files(".dropzone", [PHOTOS[0], text, flaky])

    refused = console.page.locator('#uploads li.upload[data-file="not-a-photo.jpg"]')
    expect(refused).to_have_attribute("data-state", "failed", timeout=SETTLE_MS)
    expect(refused.locator(".reason")).to_contain_text("not_an_image")
    expect(refused.get_by_role("button", name="Retry")).to_be_hidden()  # same bytes, same answer

    interrupted = console.page.locator(f'#uploads li.upload[data-file="{flaky.name}"]')
    expect(interrupted).to_have_attribute("data-state", "failed", timeout=SETTLE_MS)
    expect(interrupted.locator(".reason")).to_contain_text("network_error")
    expect(console.page.locator("#uploads li.upload[data-state=done]")).to_have_count(
        1, timeout=SETTLE_MS
    )
    console.screenshots("upload-failure")

    interrupted.get_by_role("button", name="Retry").click()  # a new upload URL, the same file
    expect(console.page.locator("#uploads li.upload[data-state=done]")).to_have_count(
        2, timeout=SETTLE_MS
    )
    expect(console.page.locator("#project-grid li.tile")).to_have_count(2)
    assert len(broken) == 1

    console.sign_in_as("operator")
    overview = console.page.locator('[data-screen="operator"] form.project-picker')
    expect(overview.locator("input[name=projectId]")).to_have_value(project)
    counts = console.page.locator("#overview-counts")
    expect(counts.locator('[data-state="done"] dd')).to_have_text("2")
    expect(counts.locator('[data-state="rejected"] dd')).to_have_text("1")
    expect(counts.locator('[data-state="pending"] dd')).to_have_text("1")  # the broken PUT
    expect(console.page.locator("#overview-failures li")).to_contain_text("not_an_image")
    expect(console.page.locator("#overview-failures li")).to_contain_text("not-a-photo.jpg")
    # The headline counts what the tiles count, in the tiles' words.
    expect(console.page.locator("#overview-status")).to_have_text(
        re.compile(r": 4 photos: 2 done, 1 waiting for upload, 1 rejected\.$")
    )
    tiles = counts.locator("[data-state] dd").all_inner_texts()
    assert sum(int(n) for n in tiles) == int(counts.locator(".count-total dd").inner_text()) == 4
    expect(counts.locator('[data-state="failed"] dd')).to_have_text("0")
    console.screenshots("operator-overview")


def test_the_page_loads_nothing_from_outside_the_service(
    page: Page, console: Console, console_server: ConsoleServer
) -> None:
    requested: list[str] = []

    def record(route: Route) -> None:
        requested.append(route.request.url)
        route.continue_()

    page.route("**/*", record)
    console.open("sign-in")
    console.screenshots("sign-in")
    console.sign_in_as("photographer")
    upload_photos(console, PHOTOS[:1])
    expect(page.locator("#project-grid li.tile")).to_have_count(1)
    console.wait_for_images()
    guard = console.open("attendee")  # a photographer's token cannot use it: the screen says so
    expect(guard).to_contain_text("needs a user token of audience media")
    expect(guard.get_by_role("button", name="Sign in as user (dev)")).to_be_visible()
    for name in ("operator", "images", "sign-in"):
        console.open(name)
    page.wait_for_load_state("networkidle")

    origin = urlsplit(console_server.url)
    assert {urlsplit(url)[:2] for url in requested} == {origin[:2]}
    assert any("/_storage/" in url for url in requested)  # presigned thumbnails were loaded


def test_images_demo_shows_the_profile_rendition(console: Console) -> None:
    console.sign_in_as("user")
    console.open("images")
    console.page.set_input_files("#avatar-file", str(FACES / "obama_1.jpg"))
    profile = console.page.locator("#images-profile")
    expect(profile).to_be_visible()
    expect(profile).to_have_attribute("src", PROFILE_PATH)
    console.page.wait_for_function(
        "() => document.getElementById('images-profile').naturalWidth === 240"
    )
    expect(console.page.locator("#images-flow li")).to_have_count(3)
    console.screenshots("images")


def test_keyboard_alone_signs_in_and_reaches_the_upload(page: Page, console: Console) -> None:
    console.open("sign-in")
    for _ in range(20):  # skip link, brand, nav, identity, then the dev identities
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.dataset.role") == "photographer":
            break
    page.keyboard.press("Enter")
    console.screen("photographer").wait_for()
    page.keyboard.press("Tab")  # from the focused heading into the project form
    assert page.evaluate("document.activeElement.name") == "projectId"
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")  # New project
    for _ in range(3):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == "photo-files":
            break
    assert page.evaluate("document.activeElement.id") == "photo-files"
    outline = page.evaluate("getComputedStyle(document.querySelector('.dropzone')).outlineStyle")
    assert outline == "solid"  # the drop zone shows the hidden input's focus


def test_a_pasted_bearer_token_signs_in(console: Console, make_token) -> None:  # type: ignore[no-untyped-def]
    console.open("sign-in")
    field = console.page.get_by_role("textbox", name="Bearer token")
    field.fill("not-a-jwt")
    console.page.get_by_role("main").get_by_role("button", name="Sign in", exact=True).click()
    expect(console.page.locator("#sign-in-status")).to_contain_text("three dot-separated parts")
    field.fill(make_token(aud="backoffice", roles=["operator"], sub="ops-7"))
    console.page.get_by_role("main").get_by_role("button", name="Sign in", exact=True).click()
    expect(console.screen("operator")).to_be_visible()
    expect(console.page.locator("#identity")).to_contain_text("operator")
    expect(console.page.locator("#profile-status")).to_have_text("No profile picture yet.")


# --- the console's own endpoints, without a browser --------------------------------------------


def test_index_is_served_fresh_with_a_strict_content_security_policy(
    client: TestClient,
) -> None:
    resp = client.get("/")
    assert resp.status_code == 200
    assert resp.headers["cache-control"] == "no-cache"
    assert "default-src 'self'" in resp.headers["content-security-policy"]
    assert '<script type="module" src="/console/app.js">' in resp.text
    module = client.get("/console/app.js")
    assert module.status_code == 200
    assert "javascript" in module.headers["content-type"]
    assert client.get("/console/nope.js").status_code == 404


def test_dev_sign_in_mints_tokens_the_api_accepts(app: FastAPI) -> None:
    # Addressed to localhost, as a browser on the developer's machine does.
    client = TestClient(app, base_url="http://localhost:3003")
    assert client.get("/console/config").json()["devSignIn"] is True
    body = client.post("/console/dev-token", json={"role": "operator"}).json()
    assert body["audience"] == "backoffice"
    headers = {"Authorization": f"Bearer {body['token']}"}
    resp = client.post("/v1/operators/me/profile-picture/upload-url", headers=headers)
    assert resp.status_code == 200, resp.text
    user = client.post("/console/dev-token", json={"role": "user", "subject": "ada"}).json()
    assert (user["audience"], user["subject"]) == ("media", "ada")
    assert client.post("/console/dev-token", json={"role": "root"}).status_code == 422
    bad_subject = {"role": "user", "subject": "../x"}
    assert client.post("/console/dev-token", json=bad_subject).status_code == 422


def test_dev_sign_in_is_off_when_a_jwt_key_is_configured(runtime: Runtime) -> None:
    settings = runtime.settings.model_copy(update={"jwt_hs256_secret": "s" * 32})
    app = create_app(settings, database=runtime.database, store=runtime.store)
    with TestClient(app) as client:
        assert client.get("/console/config").json()["devSignIn"] is False
        resp = client.post("/console/dev-token", json={"role": "operator"})
        assert resp.status_code == 404
        assert resp.headers["content-type"] == "application/problem+json"
        assert resp.json()["code"] == "dev_sign_in_disabled"


def test_dev_sign_in_is_off_on_a_public_bind_unless_asked(runtime: Runtime) -> None:
    # Anyone who reaches the endpoint can become an operator: not on 0.0.0.0 by default.
    for update, expected in (
        ({"host": "0.0.0.0"}, 404),
        ({"host": "0.0.0.0", "console_dev_sign_in": True}, 200),
        ({"host": "127.0.0.1", "console_dev_sign_in": False}, 404),
    ):
        settings = runtime.settings.model_copy(update=update)
        app = create_app(settings, database=runtime.database, store=runtime.store)
        with TestClient(app, base_url="http://localhost") as client:
            resp = client.post("/console/dev-token", json={"role": "operator"})
            assert resp.status_code == expected, update


def test_photos_of_other_types_are_declared_as_what_they_are(
    console: Console, tmp_path: Path
) -> None:
    """A phone's HEIC and a PNG next to a JPEG: each URL is signed for its file's type and the
    PUT says it; the JPEGs of a drop still share one batch request."""
    png = tmp_path / "screenshot.png"
    pyvips.Image.new_from_file(str(PHOTOS[0])).pngsave(str(png))
    heic = sorted((FACES.parent / "heic").glob("*.heic"))[0]
    console.sign_in_as("photographer")
    puts: dict[str, str] = {}
    calls: list[str] = []

    def seen(request) -> None:  # type: ignore[no-untyped-def]
        path = urlsplit(request.url).path
        calls.append(f"{request.method} {path}")
        if request.method == "PUT" and path.startswith("/_storage/"):
            puts[path] = request.headers.get("content-type", "")

    console.page.on("request", seen)
    upload_photos(console, [PHOTOS[0], png, heic])

    # Chromium calls a .heic file image/heif: both are HEIF containers, both are signable.
    declared = sorted(puts.values())
    assert declared[0] in ("image/heic", "image/heif")
    assert declared[1:] == ["image/jpeg", "image/png"]
    assert calls.count("POST /v1/photos/upload-urls") == 1
    assert calls.count("POST /v1/photos/upload-url") == 2

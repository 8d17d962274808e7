"""GET /_images/APP_ID/OBJECT_ID/{profile|original}: public, cached, upright, stripped."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path

import pytest
import pyvips
from fastapi.testclient import TestClient

from mediaplane.images_api.models import ImagesFile
from mediaplane.images_api.service import RenderedVariants, Variant
from mediaplane.imaging import render_counter
from mediaplane.runtime import Runtime
from tests.images_api.helpers import signed_upload_url
from tests.imaging.factories import jpeg_metadata_segments

FIXTURES = Path(__file__).parents[1] / "fixtures"
EXIF = FIXTURES / "exif-orientation"
ORIENTATION_FILES = sorted(p.name for p in EXIF.glob("*.jpg"))


def upload(client: TestClient, app, object_id: str, data: bytes) -> None:
    resp = client.post(signed_upload_url(app, "app", object_id), files={"file": ("x.jpg", data)})
    assert resp.status_code == 200, resp.text


def mean_abs_diff(a: bytes, b: bytes) -> float:
    left = pyvips.Image.new_from_buffer(a, "")
    right = pyvips.Image.new_from_buffer(b, "")
    return float((left - right).abs().avg())


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_profile_of_every_orientation_is_upright_240_and_stripped(
    client: TestClient, app, backend: str
) -> None:
    # The set holds orientations 0 (no tag) to 8 for both families: 18 files.
    assert len(ORIENTATION_FILES) == 18
    for name in ORIENTATION_FILES:
        upload(client, app, name.replace(".jpg", "").replace("_", "-"), (EXIF / name).read_bytes())
    reference: dict[str, bytes] = {}
    for family in ("Landscape", "Portrait"):
        resp = client.get(f"/_images/app/{family}-1/profile")
        assert resp.status_code == 200
        reference[family] = resp.content
    for name in ORIENTATION_FILES:
        family = name.split("_")[0]
        resp = client.get(f"/_images/app/{name.replace('.jpg', '').replace('_', '-')}/profile")
        assert resp.status_code == 200, name
        assert resp.headers["content-type"] == "image/jpeg"
        image = pyvips.Image.new_from_buffer(resp.content, "")
        assert (image.width, image.height) == (240, 240), name
        # Upright: close to the orientation-1 rendering (a wrong rotation differs by > 40).
        assert mean_abs_diff(resp.content, reference[family]) < 6, name
        assert jpeg_metadata_segments(resp.content) == [], name


def test_a_wrong_rotation_would_be_caught(client: TestClient, app) -> None:
    # Guards the threshold above: the same picture rotated 90° is far from the reference.
    upload(client, app, "ref", (EXIF / "Landscape_1.jpg").read_bytes())
    reference = client.get("/_images/app/ref/profile").content
    rotated = pyvips.Image.new_from_buffer(reference, "").rot90().jpegsave_buffer()
    assert mean_abs_diff(rotated, reference) > 25


def test_repeat_profile_get_does_no_image_work_and_etag_gives_304(client, app) -> None:
    upload(client, app, "face", (FIXTURES / "faces" / "biden_1.jpg").read_bytes())
    before = render_counter.value
    first = client.get("/_images/app/face/profile")
    assert first.status_code == 200
    assert render_counter.value == before + 1
    second = client.get("/_images/app/face/profile")
    assert second.status_code == 200 and second.content == first.content
    assert render_counter.value == before + 1  # served from the cached variant
    etag = first.headers["etag"]
    assert etag.startswith('"') and not etag.startswith("W/")
    assert "immutable" in first.headers["cache-control"]
    assert "public" in first.headers["cache-control"]
    not_modified = client.get("/_images/app/face/profile", headers={"If-None-Match": etag})
    assert not_modified.status_code == 304 and not_modified.content == b""
    assert render_counter.value == before + 1


def test_original_is_the_stored_bytes_with_sniffed_type(client, app) -> None:
    data = (FIXTURES / "faces" / "obama_2.jpg").read_bytes()
    upload(client, app, "orig", data)
    resp = client.get("/_images/app/orig/original")
    assert resp.status_code == 200 and resp.content == data
    assert resp.headers["content-type"] == "image/jpeg"
    assert resp.headers["content-disposition"] == "inline"
    assert resp.headers["x-content-type-options"] == "nosniff"
    etag = resp.headers["etag"]
    assert (
        client.get("/_images/app/orig/original", headers={"If-None-Match": etag}).status_code == 304
    )


def test_original_that_is_not_an_image_is_an_attachment(client, app, runtime: Runtime) -> None:
    # Uploads only accept images; this guards files that reached storage some other way.
    runtime.store.put(
        "app/html", io.BytesIO(b"<html><script>alert(1)</script>"), content_type="text/html"
    )
    with runtime.database.transaction() as session:
        session.add(
            ImagesFile(
                id="row-html",
                app_id="app",
                object_id="html",
                size=31,
                metadata_={"uploaded_by": "admin_api", "user_id": "u"},
                created_at=datetime.now(UTC).replace(tzinfo=None),
            )
        )
    resp = client.get("/_images/app/html/original")
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "application/octet-stream"
    assert resp.headers["content-disposition"] == "attachment"


def test_unknown_option_or_object_is_404(client, app) -> None:
    upload(client, app, "known", (FIXTURES / "faces" / "obama_1.jpg").read_bytes())
    for path in (
        "/_images/app/known/thumbnail",
        "/_images/app/unknown/profile",
        "/_images/other/known/original",
    ):
        resp = client.get(path)
        assert resp.status_code == 404, path
        assert resp.json()["error"]["name"] == "NotFound"


@pytest.mark.parametrize("settings_overrides", [{"images_host": "cdn.example.com"}])
def test_images_host_redirects_other_hosts(client, app) -> None:
    resp = client.get("/_images/app/x/profile", follow_redirects=False)
    assert resp.status_code == 302
    assert resp.headers["location"] == "https://cdn.example.com/_images/app/x/profile"
    on_cdn = client.get("/_images/app/x/profile", headers={"host": "cdn.example.com"})
    assert on_cdn.status_code == 404  # served (not redirected) on the images host


def test_concurrent_first_gets_render_once(client: TestClient, app) -> None:
    import threading

    upload(client, app, "busy", (FIXTURES / "faces" / "obama_and_biden.jpg").read_bytes())
    before = render_counter.value
    barrier = threading.Barrier(6)
    bodies: list[bytes] = []

    def fetch() -> None:
        barrier.wait()
        bodies.append(client.get("/_images/app/busy/profile").content)

    threads = [threading.Thread(target=fetch) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(bodies)) == 1 and len(bodies) == 6
    assert render_counter.value == before + 1


class CountingStore:
    """The app's store, counting reads and database-free: what a cached GET must not do."""

    def __init__(self, store) -> None:  # type: ignore[no-untyped-def]
        self.inner = store
        self.reads: list[str] = []

    def read(self, key: str) -> bytes:
        self.reads.append(key)
        data: bytes = self.inner.read(key)
        return data

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return getattr(self.inner, name)


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_a_cached_profile_get_reads_neither_storage_nor_the_database(
    client: TestClient, app, backend: str
) -> None:
    upload(client, app, "fast-path", (FIXTURES / "faces" / "obama_1.jpg").read_bytes())
    first = client.get("/_images/app/fast-path/profile")
    assert first.status_code == 200
    counting = CountingStore(app.state.store)
    app.state.store = counting
    app.state.db = None  # any query now fails loudly

    again = client.get("/_images/app/fast-path/profile")
    revalidated = client.get(
        "/_images/app/fast-path/profile", headers={"If-None-Match": first.headers["etag"]}
    )

    assert again.status_code == 200
    assert again.content == first.content
    assert again.headers["etag"] == first.headers["etag"]
    assert again.headers["content-type"] == "image/jpeg"
    assert revalidated.status_code == 304
    assert counting.reads == []


@pytest.mark.parametrize("settings_overrides", [{"images_memory_cache_bytes": 0}])
def test_without_the_memory_cache_the_variant_comes_from_storage(client: TestClient, app) -> None:
    upload(client, app, "no-memory", (FIXTURES / "faces" / "obama_1.jpg").read_bytes())
    first = client.get("/_images/app/no-memory/profile")
    counting = CountingStore(app.state.store)
    app.state.store = counting

    again = client.get("/_images/app/no-memory/profile")

    assert again.content == first.content
    # One read: the variant cached in storage (not the original: nothing is rendered again).
    assert len(counting.reads) == 1
    assert counting.reads[0].startswith("_variants/")
    assert counting.reads[0].endswith("/app/no-memory/profile")


def test_rendered_variants_are_bounded_by_bytes_least_recently_used_first() -> None:
    kept = RenderedVariants(capacity_bytes=10)
    for name in ("a", "b", "c"):
        kept.put(Variant(data=b"x" * 4, content_type="image/jpeg", etag=name))
    # 12 bytes asked for, 10 allowed: the oldest went.
    assert [kept.get(n) is not None for n in ("a", "b", "c")] == [False, True, True]
    assert kept.get("b") is not None  # b is now the most recent: c goes next
    kept.put(Variant(data=b"y" * 4, content_type="image/jpeg", etag="d"))
    assert [kept.get(n) is not None for n in ("b", "c", "d")] == [True, False, True]
    kept.put(Variant(data=b"z" * 11, content_type="image/jpeg", etag="huge"))
    assert kept.get("huge") is None  # larger than the whole cache: never kept
    assert kept.get("d") is not None


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_a_small_original_is_served_from_memory_once_read(
    client: TestClient, app, backend: str
) -> None:
    data = (FIXTURES / "faces" / "obama_1.jpg").read_bytes()
    upload(client, app, "small-original", data)
    first = client.get("/_images/app/small-original/original")
    counting = CountingStore(app.state.store)
    app.state.store = counting

    again = client.get("/_images/app/small-original/original")

    assert first.content == again.content == data
    assert again.headers["content-type"] == "image/jpeg"
    assert again.headers["content-disposition"] == "inline"
    assert again.headers["etag"] == first.headers["etag"]
    assert counting.reads == []

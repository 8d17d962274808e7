"""Faces end to end: selfies find their people in event photos, whatever came first, with
consent checked where data is written and erased on revocation."""

from __future__ import annotations

import random
import uuid
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from mediaplane.faces import LocalFaceEngine
from mediaplane.faces.models import FaceMatch, PhotoFace, SelfieFace
from tests.faces.test_engine_contract import LIMITS
from tests.imaging import factories
from tests.jobs.helpers import SETTLED, drain, start_worker, steps_of, upload_photo, wait_until
from tests.media_api.helpers import bearer, put_to_presigned

FACES = Path(__file__).parents[1] / "fixtures" / "faces"
PHOTOS = ("biden_2.jpg", "obama_2.jpg", "obama_and_biden.jpg")
EXPECTED = {
    "biden": {"biden_2.jpg", "obama_and_biden.jpg"},
    "obama": {"obama_2.jpg", "obama_and_biden.jpg"},
}


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    return {"face_engine": "local"}


class Event:
    """A project with a photographer and two attendees, driven through the public API."""

    def __init__(self, client: TestClient, make_token) -> None:
        self.client = client
        self.project = uuid.uuid4()
        self.photographer = make_token(aud="media", roles=["photographer"], sub="pat")
        self.users = {
            name: bearer(make_token(aud="media", roles=["user"], sub=name))
            for name in ("biden", "obama")
        }
        self.photo_names: dict[str, str] = {}

    def consent(self, user: str) -> None:
        resp = self.client.put("/v1/me/consents/biometric_processing", headers=self.users[user])
        assert resp.status_code in (200, 201)

    def revoke(self, user: str) -> None:
        resp = self.client.delete("/v1/me/consents/biometric_processing", headers=self.users[user])
        assert resp.status_code == 200

    def photo(self, name: str) -> None:
        body = upload_photo(
            self.client, self.photographer, (FACES / name).read_bytes(), project=self.project
        )
        self.photo_names[body["photoId"]] = name

    def selfie(self, user: str, data: bytes | None = None) -> dict:
        headers = self.users[user]
        body = self.client.post("/v1/selfie/upload-url", headers=headers).json()
        image = data if data is not None else (FACES / f"{user}_1.jpg").read_bytes()
        assert put_to_presigned(self.client, body["uploadUrl"], image).status_code == 200
        return body

    def my_photos(self, user: str) -> set[str]:
        resp = self.client.get(
            "/v1/me/photos", params={"projectId": str(self.project)}, headers=self.users[user]
        )
        assert resp.status_code == 200, resp.text
        items = resp.json()["items"]
        for item in items:
            # The derivatives, each one, and never the original.
            assert set(item["downloads"]) == {"thumb-400", "thumb-800", "watermarked"}
            assert item["similarity"] >= 50
        return {self.photo_names[item["photoId"]] for item in items}

    def my_selfie(self, user: str) -> dict:
        return self.client.get("/v1/me/selfie", headers=self.users[user]).json()


@pytest.fixture
def event(client: TestClient, make_token) -> Event:
    return Event(client, make_token)


def test_each_selfie_finds_exactly_its_person(event: Event, app) -> None:
    for user in event.users:
        event.consent(user)
        event.selfie(user)
    for name in PHOTOS:
        event.photo(name)
    drain(app)
    assert {user: event.my_photos(user) for user in event.users} == EXPECTED
    assert event.my_selfie("biden")["face"]["status"] == "indexed"
    # Previews only, and they are there: the pipeline ran for the matched photos.
    resp = event.client.get(
        "/v1/me/photos", params={"projectId": str(event.project)}, headers=event.users["obama"]
    )
    items = resp.json()["items"]
    assert len(items) == len(EXPECTED["obama"])  # `all` over no items would prove nothing
    assert all(set(i["downloads"]) == {"thumb-400", "thumb-800", "watermarked"} for i in items)


@pytest.mark.parametrize("order", ["photos_first", "selfies_first"])
def test_matches_do_not_depend_on_order(event: Event, app, order: str) -> None:
    for user in event.users:
        event.consent(user)
    if order == "photos_first":
        for name in PHOTOS:
            event.photo(name)
        drain(app)
        for user in event.users:
            event.selfie(user)
    else:
        for user in event.users:
            event.selfie(user)
        drain(app)
        for name in PHOTOS:
            event.photo(name)
    drain(app)
    assert {user: event.my_photos(user) for user in event.users} == EXPECTED


@pytest.mark.slow
def test_two_workers_interleaved_give_the_sequential_matches(event: Event, app, settings) -> None:
    for user in event.users:
        event.consent(user)
    actions = [("photo", n) for n in PHOTOS] + [("selfie", u) for u in event.users]
    random.Random(7).shuffle(actions)
    workers = [start_worker(settings, concurrency=2) for _ in range(2)]
    try:
        for kind, name in actions:
            event.photo(name) if kind == "photo" else event.selfie(name)
        wait_until(
            lambda: (
                len(steps_of(app)) == 3 * 3 + 2 and {s.status for s in steps_of(app)} <= SETTLED
            ),
            timeout=120,
            interval=0.3,
        )
    finally:
        for worker in workers:
            worker.terminate()
            worker.wait(timeout=15)
    assert {s.status for s in steps_of(app)} == {"done"}
    assert {user: event.my_photos(user) for user in event.users} == EXPECTED


def count(app, model) -> int:
    with app.state.db.transaction() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def test_consent_revoked_before_processing_writes_nothing(event: Event, app, runtime) -> None:
    event.consent("biden")
    event.selfie("biden")
    event.revoke("biden")  # before process_selfie ran
    drain(app)
    assert count(app, SelfieFace) == 0
    assert list(runtime.store.list("selfies/biden/")) == []


def test_revocation_after_indexing_erases_everything(event: Event, app, runtime) -> None:
    for user in event.users:
        event.consent(user)
        event.selfie(user)
    for name in PHOTOS:
        event.photo(name)
    drain(app)
    assert event.my_photos("biden") == EXPECTED["biden"]
    assert list(runtime.store.list("selfies/biden/"))
    event.revoke("biden")
    with app.state.db.transaction() as session:
        assert session.scalar(select(func.count()).where(SelfieFace.user_id == "biden")) == 0
        assert session.scalar(select(func.count()).where(FaceMatch.user_id == "biden")) == 0
        assert session.scalar(select(func.count()).where(FaceMatch.user_id == "obama")) == 2
    assert list(runtime.store.list("selfies/biden/")) == []
    assert event.my_selfie("biden")["face"]["status"] == "erased"
    # Photos and other people's faces stay.
    assert count(app, PhotoFace) >= 4
    assert event.my_photos("obama") == EXPECTED["obama"]
    # Without consent the list is closed to her.
    resp = event.client.get(
        "/v1/me/photos", params={"projectId": str(event.project)}, headers=event.users["biden"]
    )
    assert resp.status_code == 403 and resp.json()["code"] == "consent_required"


def test_delete_my_selfie_erases_without_revoking(event: Event, app, runtime) -> None:
    event.consent("obama")
    event.selfie("obama")
    event.photo("obama_2.jpg")
    drain(app)
    assert event.my_photos("obama") == {"obama_2.jpg"}
    assert event.client.delete("/v1/me/selfie", headers=event.users["obama"]).status_code == 204
    assert count(app, SelfieFace) == 0 and count(app, FaceMatch) == 0
    assert list(runtime.store.list("selfies/obama/")) == []
    assert event.my_photos("obama") == set()


def tiny_face() -> bytes:
    import pyvips

    face = pyvips.Image.new_from_file(str(FACES / "obama_1.jpg")).thumbnail_image(60)
    canvas = pyvips.Image.black(1600, 1200, bands=3) + 255
    return canvas.insert(face, 700, 500).jpegsave_buffer(Q=90)


def selfie_with_bystander(bystander_width: int) -> bytes:
    """obama_1.jpg (his face ~260 px wide) with Biden's face, cut from biden_2.jpg, pasted in a
    corner at `bystander_width` px: someone behind him, or a second person beside him."""
    import pyvips

    selfie = pyvips.Image.new_from_file(str(FACES / "obama_1.jpg"))
    biden = pyvips.Image.new_from_file(str(FACES / "biden_2.jpg")).crop(380, 230, 560, 560)
    biden = biden.resize(bystander_width / 447)  # his face is ~447 px wide in biden_2.jpg
    return selfie.insert(biden, selfie.width - biden.width, 0).jpegsave_buffer(Q=90)


@pytest.mark.parametrize(("bystander_width", "status"), [(90, "indexed"), (230, "multiple_faces")])
def test_a_face_behind_the_selfie_taker_is_a_bystander(
    event: Event, app, bystander_width: int, status: str
) -> None:
    data = selfie_with_bystander(bystander_width)
    assert len(LocalFaceEngine(limits=LIMITS).detect(data)) == 2  # both faces are found

    event.consent("obama")
    event.selfie("obama", data)
    drain(app)

    assert event.my_selfie("obama")["face"]["status"] == status
    if status == "indexed":  # Obama's face, not the bystander's: his photos are found
        event.photo("obama_2.jpg")
        drain(app)
        assert event.my_photos("obama") == {"obama_2.jpg"}


@pytest.mark.parametrize(
    ("make_image", "status"),
    [
        pytest.param(lambda: factories.jpeg_bytes(800, 600), "no_face", id="non-face"),
        pytest.param(tiny_face, "no_face", id="tiny-face"),
        pytest.param(
            lambda: (FACES / "obama_and_biden.jpg").read_bytes(),
            "multiple_faces",
            id="several-faces",
        ),
    ],
)
def test_selfie_states(event: Event, app, make_image, status: str) -> None:
    event.consent("obama")
    event.selfie("obama", make_image())
    drain(app)
    face = event.my_selfie("obama")["face"]
    assert face["status"] == status and face["reason"].startswith(status)
    assert count(app, SelfieFace) == 0


def test_photo_without_faces_is_done_with_zero_faces(event: Event, app) -> None:
    upload_photo(
        event.client, event.photographer, factories.jpeg_bytes(900, 600), project=event.project
    )
    drain(app)
    assert {(s.step, s.status) for s in steps_of(app)} == {
        ("thumbnail", "done"),
        ("watermark", "done"),
        ("faces", "done"),
    }
    assert count(app, PhotoFace) == 0


# --- matching rules (faces/matching.py) -----------------------------------------------------------


def two_of_biden() -> bytes:
    """biden_2 twice on one photo: as taken, and smaller and darker (a worse likeness)."""
    import pyvips

    photo = pyvips.Image.new_from_file(str(FACES / "biden_2.jpg")).autorot()
    other = photo.resize(0.5).linear(0.6, 0).cast("uchar")
    canvas = pyvips.Image.black(photo.width + other.width, photo.height, bands=3) + 200
    canvas = canvas.insert(photo, 0, 0).insert(other, photo.width, 300)
    return canvas.cast("uchar").copy(interpretation="srgb").jpegsave_buffer(Q=92)


def photo_faces_by_distance(app, user_id: str) -> list[uuid.UUID]:
    """The photo faces ordered by their distance to the user's selfie face, closest first."""
    with app.state.db.transaction() as session:
        selfie = session.get(SelfieFace, user_id)
        assert selfie is not None
        rows = session.execute(
            select(PhotoFace.id).order_by(PhotoFace.embedding.l2_distance(selfie.embedding))
        )
        return [r.id for r in rows]


def matches(app) -> set[tuple[str, uuid.UUID]]:
    with app.state.db.transaction() as session:
        return {(m.user_id, m.photo_face_id) for m in session.scalars(select(FaceMatch))}


@pytest.mark.parametrize("order", ["photos_first", "selfies_first"])
def test_a_user_matches_a_photo_once_with_the_closest_face(event: Event, app, order: str) -> None:
    event.consent("biden")

    def upload() -> None:
        upload_photo(event.client, event.photographer, two_of_biden(), project=event.project)

    steps = [lambda: event.selfie("biden"), upload]
    for step in steps if order == "selfies_first" else reversed(steps):
        step()
        drain(app)

    assert count(app, PhotoFace) == 2  # both faces found and stored
    closest = photo_faces_by_distance(app, "biden")[0]
    assert matches(app) == {("biden", closest)}


@pytest.mark.parametrize("order", ["photos_first", "selfies_first"])
def test_one_face_is_never_two_people(event: Event, app, make_token, order: str) -> None:
    # Two accounts with selfies of the same man: the photo's one face is the closer one's.
    event.users["joe"] = bearer(make_token(aud="media", roles=["user"], sub="joe"))
    for user in ("biden", "joe"):
        event.consent(user)

    def selfies() -> None:
        event.selfie("biden")  # biden_1.jpg
        event.selfie("joe", (FACES / "biden_2.jpg").read_bytes())  # the photo itself
        drain(app)

    def photo() -> None:
        event.photo("biden_2.jpg")
        drain(app)

    for step in (selfies, photo) if order == "selfies_first" else (photo, selfies):
        step()

    (face,) = photo_faces_by_distance(app, "joe")
    assert matches(app) == {("joe", face)}
    assert event.my_photos("joe") == {"biden_2.jpg"}
    assert event.my_photos("biden") == set()


def test_assign_keeps_the_closest_pairs_and_skips_exclusions() -> None:
    from mediaplane.faces.index import Candidate
    from mediaplane.faces.matching import assign

    photo, project = uuid.uuid4(), uuid.uuid4()
    face_a, face_b = uuid.uuid4(), uuid.uuid4()

    def pair(face: uuid.UUID, user: str, similarity: float) -> Candidate:
        return Candidate(photo, project, face, user, similarity, {})

    candidates = [
        pair(face_a, "ann", 80),
        pair(face_b, "ann", 70),  # ann's second face: dropped
        pair(face_a, "bob", 75),  # bob's closest face is ann's: he takes face_b
        pair(face_b, "bob", 60),
    ]
    kept = {(c.photo_face_id, c.user_id) for c in assign(candidates)}
    assert kept == {(face_a, "ann"), (face_b, "bob")}
    # "Not me": ann said face_a is not her; she is face_b, bob face_a.
    kept = {(c.photo_face_id, c.user_id) for c in assign(candidates, excluded={(face_a, "ann")})}
    assert kept == {(face_b, "ann"), (face_a, "bob")}


# --- what photographers see -----------------------------------------------------------------------


def test_the_photo_view_shows_where_faces_are_and_not_who(event: Event, app, make_token) -> None:
    for user in event.users:
        event.consent(user)
        event.selfie(user)
    body = upload_photo(
        event.client,
        event.photographer,
        (FACES / "obama_and_biden.jpg").read_bytes(),
        project=event.project,
    )
    drain(app)
    url = f"/v1/photos/{body['photoId']}"
    operator = bearer(make_token(aud="backoffice", roles=["operator"], sub="olga"))

    for headers in (bearer(event.photographer), operator):
        resp = event.client.get(url, headers=headers)
        assert resp.status_code == 200, resp.text
        faces = resp.json()["faces"]
        boxes = [f["box"] for f in faces]
        assert all(set(b) == {"x", "y", "width", "height"} for b in boxes)
        assert [set(f) for f in faces] == [{"box"}] * 3  # a place, nothing about a person
        # Obama, Biden and the child, largest first, in pixels of the 2000×1428 original.
        for x, y in [(1230, 500), (843, 542), (1677, 1140)]:
            assert any(
                b["x"] <= x <= b["x"] + b["width"] and b["y"] <= y <= b["y"] + b["height"]
                for b in boxes
            )
        areas = [b["width"] * b["height"] for b in boxes]
        assert areas == sorted(areas, reverse=True)
        assert "biden" not in resp.text and "obama" not in resp.text
    # The project's photo list shows them too; the attendees do not get the view at all.
    listing = event.client.get(f"/v1/projects/{event.project}/photos", headers=operator).json()
    assert len(listing["items"][0]["faces"]) == 3
    assert event.client.get(url, headers=event.users["obama"]).status_code == 403

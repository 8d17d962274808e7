"""Who may call each Media API route, as client apps see it.

The table `ENDPOINTS` states, per route, which audience:role pairs the spec grants; every route
is then called by every `CALLERS` token: granted → the route's 2xx, anything else → 403
`wrong_audience` (audience not accepted by the route) or `insufficient_role`. All callers of a
row use the subject that owns what the route touches, so a refusal is the role gate's, never
ownership's. Ownership, consent, bad bodies, forged tokens and the storage webhook's shared
secret follow.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from fastapi.testclient import TestClient
from httpx import Response

from mediaplane.faces.models import FaceMatch, PhotoFace
from mediaplane.settings import Settings
from mediaplane.uploads import PendingUpload
from tests.auth.factories import claims, ec_key, hmac_token, unsigned_token
from tests.media_api.helpers import bearer, put_to_presigned

FIXTURES = Path(__file__).parents[1] / "fixtures"
SELFIE_JPEG = (FIXTURES / "faces" / "obama_2.jpg").read_bytes()
PHOTO_JPEG = (FIXTURES / "exif-orientation" / "Landscape_1.jpg").read_bytes()

PROJECT = uuid.UUID("6f1c0b7e-3d0a-4c8e-9a57-1f9b2c3d4e5f")
ALICE = "alice"  # an end user (media:user)
BOB = "bob"
PAT = "pat"  # a photographer
PAULA = "paula"
OLGA = "olga"  # an operator
BIOMETRIC = "/v1/me/consents/biometric_processing"
EVENTS_SECRET = "test-events-secret"  # tests/conftest.py
BOX = {"left": 1, "top": 2, "width": 30, "height": 40}


# --- the Media API as a client app calls it ------------------------------------------------------


@dataclass
class MediaApi:
    """The client apps' moves (grant consent, get an upload URL, PUT the bytes), each checked."""

    client: TestClient
    make_token: Callable[..., str]

    def as_(self, sub: str, aud: str, *roles: str) -> dict[str, str]:
        return bearer(self.make_token(aud=aud, roles=list(roles), sub=sub))

    def user(self, sub: str) -> dict[str, str]:
        return self.as_(sub, "media", "user")

    def photographer(self, sub: str, aud: str = "media") -> dict[str, str]:
        return self.as_(sub, aud, "photographer")

    def operator(self, sub: str) -> dict[str, str]:
        return self.as_(sub, "backoffice", "operator")

    def grant_consent(self, user: str) -> None:
        resp = self.client.put(BIOMETRIC, headers=self.user(user))
        assert resp.status_code in (200, 201), resp.text  # 200: it was already active

    def new_selfie(self, user: str) -> dict[str, Any]:
        self.grant_consent(user)
        return ok(self.client.post("/v1/selfie/upload-url", headers=self.user(user)), 201)

    def new_photo(self, photographer: str, project: uuid.UUID = PROJECT) -> dict[str, Any]:
        resp = self.client.post(
            "/v1/photos/upload-url",
            json={"projectId": str(project)},
            headers=self.photographer(photographer),
        )
        return ok(resp, 201)

    def add_photographer(self, project: uuid.UUID, photographer: str) -> None:
        path = f"/v1/projects/{project}/photographers/{photographer}"
        ok(self.client.put(path, headers=self.operator(OLGA)), 200)

    def new_project(self, owner: str = OLGA, name: str = "Gala") -> str:
        headers = self.operator(owner) if owner == OLGA else self.photographer(owner)
        return str(
            ok(self.client.post("/v1/projects", json={"name": name}, headers=headers), 201)[
                "projectId"
            ]
        )

    def matched(self, user: str, photo_id: str) -> None:
        """Record a match of `user` in the photo, as face matching would (no engine here)."""
        db = self.client.app.state.db  # type: ignore[attr-defined]
        with db.transaction() as session:
            photo = session.get(PendingUpload, uuid.UUID(photo_id))
            face = PhotoFace(photo_id=photo.id, project_id=photo.project_id, box=BOX, quality=1.0)
            session.add(face)
            session.flush()
            session.add(
                FaceMatch(
                    photo_id=photo.id,
                    user_id=user,
                    project_id=photo.project_id,
                    photo_face_id=face.id,
                    box=BOX,
                    similarity=90.0,
                    created_at=datetime.now(UTC),
                )
            )

    def put(self, url: str, data: bytes) -> None:
        ok(put_to_presigned(self.client, url, data), 200, json=False)

    def uploaded_selfie(self, user: str) -> str:
        selfie = self.new_selfie(user)
        self.put(selfie["uploadUrl"], SELFIE_JPEG)
        return str(selfie["selfieId"])

    def uploaded_photo(self, photographer: str, project: uuid.UUID = PROJECT) -> str:
        photo = self.new_photo(photographer, project)
        self.put(photo["uploadUrl"], PHOTO_JPEG)
        return str(photo["photoId"])

    def uploaded_profile_picture(self, operator: str) -> None:
        url = "/v1/operators/me/profile-picture/upload-url"
        picture = ok(self.client.post(url, headers=self.operator(operator)), 200)
        self.put(picture["uploadUrl"], SELFIE_JPEG)


def ok(resp: Response, status: int, *, json: bool = True) -> Any:
    assert resp.status_code == status, resp.text
    return resp.json() if json else None


def assert_problem(resp: Response, status: int, code: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = resp.json()
    assert body["status"] == status
    assert body["code"] == code
    return body


@pytest.fixture
def api(client: TestClient, make_token) -> MediaApi:
    return MediaApi(client, make_token)


# --- the access table -------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    json: Any = None


@dataclass(frozen=True)
class Endpoint:
    """A route, who the spec lets call it, and how to set the stage for one call."""

    name: str
    grants: frozenset[str]
    """`audience:role` pairs the spec allows; `audience:*` is any role of that audience."""
    ok: int
    owner: str
    """Subject of every caller in the table: the one owning what the route touches."""
    prepare: Callable[[MediaApi], Call]
    fresh: bool = False
    """The call uses up what it touches (a deletion): each caller gets a stage of its own."""

    @property
    def audiences(self) -> set[str]:
        return {grant.split(":")[0] for grant in self.grants}

    def admits(self, caller: Caller) -> bool:
        wanted = {f"{caller.aud}:{role}" for role in caller.roles} | {f"{caller.aud}:*"}
        return bool(self.grants & wanted)


@dataclass(frozen=True)
class Caller:
    aud: str
    roles: tuple[str, ...] = field(default=())

    def __str__(self) -> str:
        return f"{self.aud}:{'+'.join(self.roles) or 'no-role'}"


CALLERS = [
    *(
        Caller(aud, roles)
        for aud in ("media", "backoffice")
        for roles in (("user",), ("photographer",), ("operator",), ())
    ),
    # Every role, but a token minted for another API.
    Caller("console", ("user", "photographer", "operator")),
]


def expected(endpoint: Endpoint, caller: Caller) -> tuple[int, str | None]:
    """What the spec says `caller` gets: the route's 2xx, or 403 with its code."""
    if caller.aud not in endpoint.audiences:
        return 403, "wrong_audience"
    if not endpoint.admits(caller):
        return 403, "insufficient_role"
    return endpoint.ok, None


def selfie_upload_url(api: MediaApi) -> Call:
    api.grant_consent(ALICE)
    return Call("POST", "/v1/selfie/upload-url")


def photo_upload_url(api: MediaApi) -> Call:
    return Call("POST", "/v1/photos/upload-url", {"projectId": str(PROJECT)})


def photo_upload_urls(api: MediaApi) -> Call:
    return Call("POST", "/v1/photos/upload-urls", {"projectId": str(PROJECT), "count": 3})


def backoffice_photo_upload_url(api: MediaApi) -> Call:
    return Call("POST", "/v1/photographers/me/photos/upload-url", {"projectId": str(PROJECT)})


def profile_picture_upload_url(api: MediaApi) -> Call:
    return Call("POST", "/v1/operators/me/profile-picture/upload-url")


def complete_selfie(api: MediaApi) -> Call:
    return Call("POST", f"/v1/selfie/{api.uploaded_selfie(ALICE)}/complete")


def complete_photo(api: MediaApi) -> Call:
    return Call("POST", f"/v1/photos/{api.uploaded_photo(PAT)}/complete")


def get_photo(api: MediaApi) -> Call:
    return Call("GET", f"/v1/photos/{api.new_photo(PAT)['photoId']}")


def list_project_photos(api: MediaApi) -> Call:
    api.new_photo(PAT)
    return Call("GET", f"/v1/projects/{PROJECT}/photos")


def my_selfie(api: MediaApi) -> Call:
    api.new_selfie(ALICE)
    return Call("GET", "/v1/me/selfie")


def operator_profile_picture(api: MediaApi) -> Call:
    api.uploaded_profile_picture(OLGA)
    return Call("GET", f"/v1/operators/{OLGA}/profile-picture")


def list_consents(api: MediaApi) -> Call:
    return Call("GET", "/v1/me/consents")


def grant_consent(api: MediaApi) -> Call:
    return Call("PUT", BIOMETRIC)


def revoke_consent(api: MediaApi) -> Call:
    api.grant_consent(ALICE)
    return Call("DELETE", BIOMETRIC)


def consent_history(api: MediaApi) -> Call:
    api.grant_consent(ALICE)
    return Call("GET", BIOMETRIC)


def consent_events(api: MediaApi) -> Call:
    api.grant_consent(ALICE)
    return Call("GET", "/v1/consents/events?from=2020-01-01T00:00:00Z&to=2100-01-01T00:00:00Z")


def my_photos_everywhere(api: MediaApi) -> Call:
    api.grant_consent(ALICE)
    return Call("GET", "/v1/me/photos")


def not_me(api: MediaApi) -> Call:
    photo = api.uploaded_photo(PAT, uuid.uuid4())
    api.matched(ALICE, photo)
    return Call("DELETE", f"/v1/me/photos/{photo}")


def delete_photo(api: MediaApi) -> Call:
    return Call("DELETE", f"/v1/photos/{api.uploaded_photo(PAT)}")


def create_project(api: MediaApi) -> Call:
    return Call("POST", "/v1/projects", {"name": "Gala", "startsAt": "2026-06-01T18:00:00Z"})


def list_projects(api: MediaApi) -> Call:
    api.new_photo(PAT)
    return Call("GET", "/v1/projects")


def get_project(api: MediaApi) -> Call:
    api.new_photo(PAT)  # Pat's first upload creates the project: Pat owns it
    return Call("GET", f"/v1/projects/{PROJECT}")


def update_project(api: MediaApi) -> Call:
    api.new_photo(PAT)
    return Call("PATCH", f"/v1/projects/{PROJECT}", {"name": "Summer gala"})


def add_project_photographer(api: MediaApi) -> Call:
    api.new_photo(PAT)
    return Call("PUT", f"/v1/projects/{PROJECT}/photographers/{PAULA}")


def remove_project_photographer(api: MediaApi) -> Call:
    api.new_photo(PAT)
    api.add_photographer(PROJECT, PAULA)
    return Call("DELETE", f"/v1/projects/{PROJECT}/photographers/{PAULA}")


def delete_project(api: MediaApi) -> Call:
    return Call("DELETE", f"/v1/projects/{api.new_project()}")


def project_deletion(api: MediaApi) -> Call:
    project = api.new_project()
    ok(api.client.delete(f"/v1/projects/{project}", headers=api.operator(OLGA)), 202)
    return Call("GET", f"/v1/projects/{project}/deletion")


def endpoint(
    name: str,
    grants: str,
    ok: int,
    owner: str,
    prepare: Callable[..., Call],
    *,
    fresh: bool = False,
) -> Endpoint:
    return Endpoint(name, frozenset(grants.split()), ok, owner, prepare, fresh)


PHOTOGRAPHERS = "media:photographer backoffice:photographer"
PHOTO_READERS = f"{PHOTOGRAPHERS} backoffice:operator"
PROJECT_READERS = "media:photographer backoffice:photographer backoffice:operator media:user"

# fmt: off
ENDPOINTS = [
    endpoint("POST /v1/selfie/upload-url", "media:user", 201, ALICE, selfie_upload_url),
    endpoint("POST /v1/photos/upload-url", "media:photographer", 201, PAT, photo_upload_url),
    endpoint("POST /v1/photos/upload-urls", "media:photographer", 201, PAT, photo_upload_urls),
    endpoint("POST /v1/photographers/me/photos/upload-url", "backoffice:photographer", 201, PAT,
             backoffice_photo_upload_url),
    endpoint("POST /v1/operators/me/profile-picture/upload-url", "backoffice:operator", 200, OLGA,
             profile_picture_upload_url),
    endpoint("POST /v1/selfie/{id}/complete", "media:user", 200, ALICE, complete_selfie),
    endpoint("POST /v1/photos/{id}/complete", PHOTOGRAPHERS, 200, PAT, complete_photo),
    endpoint("GET /v1/photos/{id}", PHOTO_READERS, 200, PAT, get_photo),
    endpoint("GET /v1/projects/{pid}/photos", PHOTO_READERS, 200, PAT, list_project_photos),
    endpoint("GET /v1/me/selfie", "media:user", 200, ALICE, my_selfie),
    endpoint("GET /v1/operators/{id}/profile-picture", "media:* backoffice:*", 200, ALICE,
             operator_profile_picture),
    endpoint("GET /v1/me/consents", "media:user", 200, ALICE, list_consents),
    endpoint("PUT /v1/me/consents/{purpose}", "media:user", 201, ALICE, grant_consent),
    endpoint("DELETE /v1/me/consents/{purpose}", "media:user", 200, ALICE, revoke_consent),
    endpoint("GET /v1/me/consents/{purpose}", "media:user", 200, ALICE, consent_history),
    endpoint("GET /v1/consents/events", "backoffice:operator", 200, OLGA, consent_events),
    endpoint("GET /v1/me/photos", "media:user", 200, ALICE, my_photos_everywhere),
    endpoint("DELETE /v1/me/photos/{id}", "media:user", 204, ALICE, not_me, fresh=True),
    endpoint("DELETE /v1/photos/{id}", PHOTO_READERS, 204, PAT, delete_photo, fresh=True),
    endpoint("POST /v1/projects", "media:photographer backoffice:operator", 201, PAT,
             create_project),
    endpoint("GET /v1/projects", PROJECT_READERS, 200, PAT, list_projects),
    endpoint("GET /v1/projects/{id}", PHOTO_READERS, 200, PAT, get_project),
    endpoint("PATCH /v1/projects/{id}", PHOTO_READERS, 200, PAT, update_project),
    endpoint("PUT /v1/projects/{id}/photographers/{uid}", PHOTO_READERS, 200, PAT,
             add_project_photographer),
    endpoint("DELETE /v1/projects/{id}/photographers/{uid}", PHOTO_READERS, 200, PAT,
             remove_project_photographer, fresh=True),
    endpoint("DELETE /v1/projects/{id}", "backoffice:operator", 202, OLGA, delete_project),
    endpoint("GET /v1/projects/{id}/deletion", "backoffice:operator", 200, OLGA,
             project_deletion),
]
# fmt: on


def call(client: TestClient, c: Call, headers: dict[str, str]) -> Response:
    return client.request(c.method, c.path, json=c.json, headers=headers)


def check_access(api: MediaApi, endpoint: Endpoint, request: Call, caller: Caller) -> None:
    resp = call(api.client, request, api.as_(endpoint.owner, caller.aud, *caller.roles))

    status, code = expected(endpoint, caller)
    if code is None:
        assert resp.status_code == status, resp.text
        if status == 204:
            assert resp.content == b""
        else:
            assert resp.headers["content-type"] == "application/json"
    else:
        assert_problem(resp, status, code)
        assert "www-authenticate" not in resp.headers


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda ep: ep.name)
def test_access(api: MediaApi, endpoint: Endpoint, subtests: pytest.Subtests) -> None:
    # One stage per route, every caller a subtest: a fresh database per cell would take minutes.
    request = endpoint.prepare(api)

    with subtests.test("no token"):
        resp = call(api.client, request, headers={})
        assert_problem(resp, 401, "missing_token")
        assert resp.headers["www-authenticate"] == "Bearer"

    # Refused callers first: a granted call may change what the next one finds (a revocation).
    for caller in sorted(CALLERS, key=endpoint.admits):
        with subtests.test(caller=str(caller)):
            if endpoint.fresh and endpoint.admits(caller):
                request = endpoint.prepare(api)
            check_access(api, endpoint, request, caller)


def test_no_token_is_401_before_the_body_is_judged(client: TestClient) -> None:
    resp = client.post("/v1/photos/upload-url", json={"projectId": "nope"})

    assert_problem(resp, 401, "missing_token")


# --- consent ------------------------------------------------------------------------------------


def test_selfie_upload_url_follows_the_biometric_consent(api: MediaApi) -> None:
    alice = api.user(ALICE)
    refused = api.client.post("/v1/selfie/upload-url", headers=alice)
    assert "biometric_processing" in assert_problem(refused, 403, "consent_required")["detail"]

    api.grant_consent(ALICE)
    ok(api.client.post("/v1/selfie/upload-url", headers=alice), 201)

    ok(api.client.delete(BIOMETRIC, headers=alice), 200)
    assert_problem(api.client.post("/v1/selfie/upload-url", headers=alice), 403, "consent_required")


def test_one_users_consent_is_not_anothers(api: MediaApi) -> None:
    api.grant_consent(ALICE)

    resp = api.client.post("/v1/selfie/upload-url", headers=api.user(BOB))

    assert_problem(resp, 403, "consent_required")


# --- ownership ----------------------------------------------------------------------------------


def test_only_its_photographer_and_operators_see_a_photo(api: MediaApi) -> None:
    photo = f"/v1/photos/{api.uploaded_photo(PAT)}"

    for stranger in (api.photographer(PAULA), api.photographer(PAULA, aud="backoffice")):
        assert_problem(api.client.get(photo, headers=stranger), 404, "photo_not_found")
        assert_problem(
            api.client.post(f"{photo}/complete", headers=stranger), 404, "photo_not_found"
        )
    for reader in (api.photographer(PAT), api.photographer(PAT, "backoffice"), api.operator(OLGA)):
        resp = api.client.get(photo, headers=reader)
        assert ok(resp, 200)["status"] == "uploaded"


def test_a_photographer_lists_their_own_photos_the_owner_and_an_operator_all(api: MediaApi) -> None:
    pats = {api.new_photo(PAT)["photoId"] for _ in range(2)}
    api.add_photographer(PROJECT, PAULA)
    paulas = {api.new_photo(PAULA)["photoId"]}
    api.new_photo(PAT, project=uuid.uuid4())  # another project: in no listing below
    listing = f"/v1/projects/{PROJECT}/photos"

    def ids(headers: dict[str, str]) -> set[str]:
        return {
            item["photoId"] for item in ok(api.client.get(listing, headers=headers), 200)["items"]
        }

    assert ids(api.photographer(PAT)) == pats | paulas  # Pat created the project: the owner
    assert ids(api.photographer(PAULA, aud="backoffice")) == paulas
    assert ids(api.operator(OLGA)) == pats | paulas


def test_a_non_member_cannot_upload_into_a_project(api: MediaApi, subtests) -> None:
    api.new_photo(PAT)  # Pat's first upload creates the project (open mode)
    routes = {
        "/v1/photos/upload-url": ({"projectId": str(PROJECT)}, "media"),
        "/v1/photos/upload-urls": ({"projectId": str(PROJECT), "count": 2}, "media"),
        "/v1/photographers/me/photos/upload-url": ({"projectId": str(PROJECT)}, "backoffice"),
    }
    for path, (body, aud) in routes.items():
        with subtests.test(path):
            resp = api.client.post(path, json=body, headers=api.photographer(PAULA, aud))
            assert_problem(resp, 403, "not_a_project_member")

    api.add_photographer(PROJECT, PAULA)
    for path, (body, aud) in routes.items():
        with subtests.test(path, member=True):
            ok(api.client.post(path, json=body, headers=api.photographer(PAULA, aud)), 201)


def test_deleting_another_photographers_photo_is_403(api: MediaApi) -> None:
    project = uuid.UUID(api.new_project())
    for member in (PAT, PAULA):
        api.add_photographer(project, member)
    paulas = f"/v1/photos/{api.uploaded_photo(PAULA, project)}"

    # A fellow photographer of the project: 403; a stranger to the project: not even found.
    assert_problem(api.client.delete(paulas, headers=api.photographer(PAT)), 403, "not_photo_owner")
    stranger = api.photographer("sam")
    assert_problem(api.client.delete(paulas, headers=stranger), 404, "photo_not_found")
    ok(api.client.get(paulas, headers=api.photographer(PAULA)), 200)

    ok(api.client.delete(paulas, headers=api.photographer(PAULA)), 204, json=False)
    assert_problem(api.client.get(paulas, headers=api.photographer(PAULA)), 404, "photo_not_found")


def test_the_project_owner_deletes_any_photo_of_it(api: MediaApi) -> None:
    api.new_photo(PAT)  # Pat owns the project
    api.add_photographer(PROJECT, PAULA)
    paulas = f"/v1/photos/{api.uploaded_photo(PAULA)}"

    ok(api.client.delete(paulas, headers=api.photographer(PAT)), 204, json=False)
    assert_problem(api.client.get(paulas, headers=api.operator(OLGA)), 404, "photo_not_found")


def test_only_the_owner_or_an_operator_manages_a_project(api: MediaApi) -> None:
    api.new_photo(PAT)
    api.add_photographer(PROJECT, PAULA)
    paula = api.photographer(PAULA)

    resp = api.client.patch(f"/v1/projects/{PROJECT}", json={"name": "x"}, headers=paula)
    assert_problem(resp, 403, "not_project_owner")
    resp = api.client.put(f"/v1/projects/{PROJECT}/photographers/sam", headers=paula)
    assert_problem(resp, 403, "not_project_owner")
    resp = api.client.get(f"/v1/projects/{PROJECT}", headers=api.photographer("sam"))
    assert_problem(resp, 404, "project_not_found")


def test_a_user_cannot_complete_or_read_anothers_selfie(api: MediaApi) -> None:
    selfie = api.uploaded_selfie(ALICE)
    bob = api.user(BOB)

    resp = api.client.post(f"/v1/selfie/{selfie}/complete", headers=bob)

    assert_problem(resp, 404, "selfie_not_found")
    assert_problem(api.client.get("/v1/me/selfie", headers=bob), 404, "selfie_not_found")
    assert ok(api.client.get("/v1/me/selfie", headers=api.user(ALICE)), 200)["selfieId"] == selfie


# --- bad bodies ---------------------------------------------------------------------------------


PHOTO_UPLOAD_ROUTES = {
    "/v1/photos/upload-url": "media",
    "/v1/photographers/me/photos/upload-url": "backoffice",
}
BAD_BODIES = {
    "not a uuid": ({"projectId": "not-a-uuid"}, ["body", "projectId"]),
    "a number": ({"projectId": 42}, ["body", "projectId"]),
    "null": ({"projectId": None}, ["body", "projectId"]),
    "missing": ({}, ["body", "projectId"]),
    "extra field": ({"projectId": str(PROJECT), "name": "extra"}, ["body", "name"]),
    "no body": (None, ["body"]),
}


@pytest.mark.parametrize(("path", "aud"), PHOTO_UPLOAD_ROUTES.items())
def test_bad_project_id_is_422(
    api: MediaApi, path: str, aud: str, subtests: pytest.Subtests
) -> None:
    for case, (body, where) in BAD_BODIES.items():
        with subtests.test(case):
            resp = api.client.post(path, json=body, headers=api.photographer(PAT, aud))

            problem = assert_problem(resp, 422, "validation_failed")
            assert [error["loc"] for error in problem["errors"]] == [where]


# --- forged and broken tokens -----------------------------------------------------------------


def dev_private_key(settings: Settings) -> Any:
    """The key the running app verifies with (created in the data dir when the app started)."""
    pem = (settings.data_dir / "keys" / "dev-jwt.pem").read_bytes()
    return serialization.load_pem_private_key(pem, None)


def dev_public_pem(settings: Settings) -> bytes:
    public = dev_private_key(settings).public_key()
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def photographer_claims(**overrides: Any) -> dict[str, Any]:
    return claims(**{"sub": PAT, "aud": "media", "roles": ["photographer"], **overrides})


def dev_signed(settings: Settings, payload: dict[str, Any]) -> str:
    return jwt.encode(payload, dev_private_key(settings), algorithm="ES256")


def signed_by_another_key(settings: Settings) -> str:
    return f"Bearer {ec_key().sign(photographer_claims())}"


def tampered_claims(settings: Settings) -> str:
    # Paula's claims under a signature made for Pat's.
    header, _, signature = dev_signed(settings, photographer_claims()).split(".")
    _, payload, _ = dev_signed(settings, photographer_claims(sub=PAULA)).split(".")
    return f"Bearer {header}.{payload}.{signature}"


def expired(settings: Settings) -> str:
    now = int(time.time())
    late = photographer_claims(iat=now - 7200, nbf=now - 7200, exp=now - 3600)
    return f"Bearer {dev_signed(settings, late)}"


def alg_none(settings: Settings) -> str:
    return f"Bearer {unsigned_token(photographer_claims())}"


def hs256_keyed_with_the_public_key(settings: Settings) -> str:
    return f"Bearer {hmac_token(photographer_claims(), dev_public_pem(settings))}"


def malformed(settings: Settings) -> str:
    return "Bearer not.a.jwt"


def not_a_jwt_at_all(settings: Settings) -> str:
    return "Bearer hello"


def token_scheme(settings: Settings) -> str:
    return f"Token {dev_signed(settings, photographer_claims())}"


def basic_auth(settings: Settings) -> str:
    return "Basic cGF0OnNlY3JldA=="


TOKEN_ATTACKS = {
    signed_by_another_key: "invalid_token",
    tampered_claims: "invalid_token",
    expired: "token_expired",
    alg_none: "invalid_token",
    hs256_keyed_with_the_public_key: "invalid_token",
    malformed: "invalid_token",
    not_a_jwt_at_all: "invalid_token",
    token_scheme: "missing_token",
    basic_auth: "missing_token",
}


def upload_url_with(client: TestClient, authorization: str) -> Response:
    return client.post(
        "/v1/photos/upload-url",
        json={"projectId": str(PROJECT)},
        headers={"Authorization": authorization},
    )


def test_token_attacks_are_401(
    client: TestClient, settings: Settings, subtests: pytest.Subtests
) -> None:
    with subtests.test("control: the same claims, honestly signed"):
        resp = upload_url_with(client, f"Bearer {dev_signed(settings, photographer_claims())}")
        assert ok(resp, 201)["key"].startswith(f"photos/{PROJECT}/")

    for attack, code in TOKEN_ATTACKS.items():
        with subtests.test(attack.__name__):
            resp = upload_url_with(client, attack(settings))

            assert_problem(resp, 401, code)
            challenge = resp.headers["www-authenticate"]
            if code == "missing_token":
                assert challenge == "Bearer"
            else:
                assert challenge.startswith('Bearer error="invalid_token"')
                assert f'error_description="{code}"' in challenge


ISSUER = "https://issuer.example"


@pytest.mark.parametrize("settings_overrides", [{"jwt_issuer": ISSUER}])
def test_the_issuer_must_be_the_configured_one(
    client: TestClient, settings: Settings, make_token, subtests: pytest.Subtests
) -> None:
    with subtests.test("from mediaplane token"):
        resp = upload_url_with(client, f"Bearer {make_token(aud='media', roles=['photographer'])}")
        ok(resp, 201)

    for iss, code in [
        ("https://elsewhere.example", "invalid_issuer"),
        (f"{ISSUER}/", "invalid_issuer"),
        (None, "invalid_token"),
    ]:
        with subtests.test(iss=iss):
            payload = photographer_claims() if iss is None else photographer_claims(iss=iss)

            resp = upload_url_with(client, f"Bearer {dev_signed(settings, payload)}")

            assert_problem(resp, 401, code)


# --- the storage webhook's shared secret --------------------------------------------------------


def s3_event(key: str) -> dict[str, Any]:
    record = {
        "eventName": "s3:ObjectCreated:Put",
        "s3": {"bucket": {"name": "media"}, "object": {"key": key}},
    }
    return {"Records": [record]}


def test_storage_events_need_the_shared_secret(api: MediaApi, subtests: pytest.Subtests) -> None:
    authorizations = {
        "bearer secret": (f"Bearer {EVENTS_SECRET}", 200),
        "raw secret": (EVENTS_SECRET, 200),  # MinIO sends its auth_token as the whole header
        "missing": (None, 401),
        "wrong": ("Bearer wrong-secret", 401),
        "longer": (f"Bearer {EVENTS_SECRET}x", 401),
        "basic": (f"Basic {EVENTS_SECRET}", 401),
        "an operator's token": (api.operator(OLGA)["Authorization"], 401),
    }
    for case, (authorization, status) in authorizations.items():
        with subtests.test(case):
            headers = {} if authorization is None else {"Authorization": authorization}

            resp = api.client.post("/v1/storage/events", json=s3_event("a/b.jpg"), headers=headers)

            if status == 200:
                assert ok(resp, 200) == {"records": 1, "settled": 0}
            else:
                assert_problem(resp, 401, "invalid_events_secret")

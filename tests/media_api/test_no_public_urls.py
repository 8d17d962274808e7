"""No Media API response leads a client to the public bucket: every URL it serves is presigned.

The spec: "All download URLs served to clients must be presigned GET URLs (15-minute expiry).
The R2_PUBLIC_URL is used for internal key construction only." With R2_PUBLIC_URL set, a whole
client session runs on each backend and every JSON body the app answers is kept (an httpx
response hook on the test client, so no answer slips through). `url_problems` then walks every
string of every body, whatever its shape: a future route returning an unsigned or public URL
fails here without this file knowing its fields. The one allowed public URL is `fileUrl` of the
profile-picture upload-url answer: an identifier to store, never fetched by clients. A last
check fails when the app grows a /v1 route the session does not call.
"""

from __future__ import annotations

import math
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from mediaplane.settings import Settings
from tests.imaging import factories
from tests.media_api.helpers import bearer, get_presigned, put_to_presigned

R2_PUBLIC_URL = "https://pub-123.r2.dev"
UPLOAD_TTL = 600
DOWNLOAD_TTL = 900
FACES = Path(__file__).parents[1] / "fixtures" / "faces"
SELFIE = (FACES / "biden_1.jpg").read_bytes()
PHOTO = (FACES / "obama_2.jpg").read_bytes()
PICTURE = (FACES / "obama_1.jpg").read_bytes()
PROFILE_UPLOAD = "/v1/operators/me/profile-picture/upload-url"


# --- the walker ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Signing:
    """How a backend's presigned URLs carry their signature and expiry (query parameters)."""

    signature: str
    expires: str
    expires_is_absolute: bool
    """Local URLs carry the Unix time they expire at; SigV4 ones the seconds they live."""

    def lifetime(self, query: dict[str, list[str]], signed_at: float) -> float | None:
        value = query.get(self.expires, [""])[0]
        if not value.isdigit():
            return None
        return int(value) - signed_at if self.expires_is_absolute else int(value)


SIGV4 = Signing("X-Amz-Signature", "X-Amz-Expires", expires_is_absolute=False)
LOCAL = Signing("X-Mp-Signature", "X-Mp-Expires", expires_is_absolute=True)
SIGNING = {"s3": SIGV4, "local": LOCAL}

URL_IN_TEXT = re.compile(r"https?://[^\s\"'<>]+", re.IGNORECASE)
LIFETIME_SLACK_SECONDS = 5  # local expiries are rounded up to the second, then checked later


def strings(value: Any, path: str = "$") -> Iterator[tuple[str, str]]:
    """Every string in a JSON value, object keys included, with its JSON path."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield f"{path}.{key}<key>", str(key)
            yield from strings(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from strings(item, f"{path}[{index}]")


def objects(value: Any, path: str = "$") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every JSON object in a value, with its path."""
    if isinstance(value, dict):
        yield path, value
        for key, item in value.items():
            yield from objects(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from objects(item, f"{path}[{index}]")


def url_problems(
    body: Any,
    *,
    signing: Signing,
    public_url: str,
    signed_at: float,
    identifiers: frozenset[str] = frozenset(),
) -> list[str]:
    """What in `body` breaks the rule "only presigned URLs, 10 min to upload, 15 to download".

    - no string mentions the host of `public_url`;
    - every http(s) URL in any string carries `signing`'s signature and expiry, and lives
      600 s if it sits under an `uploadUrl` key, else 900 s;
    - every `expiresInSeconds` says the same of the URL beside it.
    Paths in `identifiers` (e.g. `$.fileUrl`) are stored identifiers, not URLs served to fetch.
    """
    problems: list[str] = []
    public_host = urlsplit(public_url).netloc.lower()
    for path, text in strings(body):
        if path in identifiers:
            continue
        if public_host in text.lower():
            problems.append(f"{path}: names the public bucket: {text!r}")
        for url in URL_IN_TEXT.findall(text):
            query = parse_qs(urlsplit(url).query)
            missing = [name for name in (signing.signature, signing.expires) if name not in query]
            if missing:
                problems.append(f"{path}: URL without {' and '.join(missing)}: {url}")
                continue
            lifetime = signing.lifetime(query, signed_at)
            wanted = UPLOAD_TTL if path.endswith(".uploadUrl") else DOWNLOAD_TTL
            if lifetime is None or abs(lifetime - wanted) > LIFETIME_SLACK_SECONDS:
                problems.append(f"{path}: URL lives {lifetime} s, not {wanted} s: {url}")
    for path, obj in objects(body):
        if "expiresInSeconds" not in obj:
            continue
        declared = obj["expiresInSeconds"]
        if "uploadUrl" in obj:
            wanted = UPLOAD_TTL
        elif "url" in obj:
            wanted = DOWNLOAD_TTL
        else:
            problems.append(f"{path}: expiresInSeconds beside no uploadUrl or url")
            continue
        if declared != wanted:
            problems.append(f"{path}.expiresInSeconds is {declared}, not {wanted}")
    return problems


SIGNED_GET = (
    "https://s3.example/b/photos/p/1/original.jpg?X-Amz-Algorithm=AWS4-HMAC-SHA256"
    "&X-Amz-Expires=900&X-Amz-Signature=abc123"
)


def check(body: Any, **options: Any) -> list[str]:
    return url_problems(
        body, signing=SIGV4, public_url=R2_PUBLIC_URL, signed_at=time.time(), **options
    )


def test_the_walker_passes_presigned_urls() -> None:
    body = {"items": [{"downloads": {"original": {"url": SIGNED_GET, "expiresInSeconds": 900}}}]}

    assert check(body) == []


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (
            {"items": [{"downloads": {"thumb-400": {"url": "https://s3.example/b/t.jpg"}}}]},
            "$.items[0].downloads.thumb-400.url: URL without X-Amz-Signature and X-Amz-Expires",
        ),
        (
            {"next": ["see http://cdn.example/x.jpg?X-Amz-Expires=900 for it"]},
            "$.next[0]: URL without X-Amz-Signature",
        ),
        ({"url": f"{R2_PUBLIC_URL}/photos/p/1/original.jpg"}, "$.url: names the public bucket"),
        (
            {"url": SIGNED_GET.replace("s3.example", "pub-123.r2.dev")},
            "$.url: names the public bucket",
        ),
        ({"photo": {"url": SIGNED_GET, "expiresInSeconds": 3600}}, "is 3600, not 900"),
        ({"url": SIGNED_GET.replace("Expires=900", "Expires=604800")}, "lives 604800 s"),
        ({"uploadUrl": SIGNED_GET}, "$.uploadUrl: URL lives 900 s, not 600 s"),
        ({SIGNED_GET.replace("X-Amz-Signature", "X"): 1}, "<key>: URL without X-Amz-Signature"),
    ],
    ids=[
        "unsigned-nested",
        "unsigned-in-prose",
        "public",
        "signed-but-public",
        "declared-ttl",
        "url-ttl",
        "upload-ttl",
        "in-a-key",
    ],
)
def test_the_walker_flags(body: Any, problem: str) -> None:
    problems = check(body)

    assert any(problem in found for found in problems), problems


def test_the_walker_skips_only_the_identifiers_it_is_told() -> None:
    body = {"uploadUrl": SIGNED_GET.replace("900", "600"), "fileUrl": f"{R2_PUBLIC_URL}/a.jpg"}

    assert check(body, identifiers=frozenset({"$.fileUrl"})) == []
    problems = check(body)
    assert len(problems) == 2 and all(p.startswith("$.fileUrl: ") for p in problems), problems
    assert any("names the public bucket" in p for p in problems), problems


def test_the_walker_reads_local_expiry_as_a_moment() -> None:
    now = time.time()

    def local(lives: int, signature: str = "&X-Mp-Signature=f00") -> list[str]:
        expires = math.ceil(now) + lives
        url = f"http://testserver/_storage/a.jpg?X-Mp-Method=GET&X-Mp-Expires={expires}{signature}"
        body = {"url": url, "expiresInSeconds": 900}
        return url_problems(body, signing=LOCAL, public_url=R2_PUBLIC_URL, signed_at=now)

    assert local(900) == []
    unsigned, long_lived = local(900, signature=""), local(9000)
    assert len(unsigned) == 1 and "URL without X-Mp-Signature" in unsigned[0], unsigned
    assert len(long_lived) == 1 and "not 900 s" in long_lived[0], long_lived


# --- a whole client session on each backend ----------------------------------------------------


@dataclass(frozen=True)
class Exchange:
    method: str
    path: str
    status: int
    body: Any
    received_at: float

    def __str__(self) -> str:
        return f"{self.method} {self.path} → {self.status}"


@dataclass
class Transcript:
    """Every JSON answer of the app, kept by a response hook on the test client."""

    exchanges: list[Exchange] = field(default_factory=list)

    def __call__(self, response: httpx.Response) -> None:
        response.read()
        request = response.request
        if response.status_code == 204 and request.url.path.startswith("/v1/"):
            body = None  # an API answer with no body: walked, nothing to audit
        elif "json" in response.headers.get("content-type", ""):
            body = response.json()
        else:
            return  # object bytes from /_storage, empty PUT answers
        self.exchanges.append(
            Exchange(request.method, request.url.path, response.status_code, body, time.time())
        )


@pytest.fixture
def transcript(client: TestClient) -> Transcript:
    kept = Transcript()
    client.event_hooks["response"].append(kept)
    return kept


def ok(resp: httpx.Response, status: int = 200) -> Any:
    assert resp.status_code == status, resp.text
    return resp.json() if resp.content else None


def uploaded(client: TestClient, url: str, data: bytes) -> None:
    resp = put_to_presigned(client, url, data)
    assert resp.status_code == 200, resp.text


def s3_event(bucket: str, key: str) -> dict[str, Any]:
    record = {
        "eventName": "s3:ObjectCreated:Put",
        "s3": {"bucket": {"name": bucket}, "object": {"key": key}},
    }
    return {"Records": [record]}


def client_session(client: TestClient, make_token, settings: Settings) -> None:
    """An end user, two photographer apps and an operator going about their day."""
    alice = bearer(make_token(aud="media", roles=["user"], sub="alice"))
    bob = bearer(make_token(aud="media", roles=["user"], sub="bob"))
    pat = bearer(make_token(aud="media", roles=["photographer"], sub="pat"))
    pat_dashboard = bearer(make_token(aud="backoffice", roles=["photographer"], sub="pat"))
    olga = bearer(make_token(aud="backoffice", roles=["operator"], sub="olga"))
    project = uuid.uuid4()

    # The end user consents, uploads a selfie and looks at it.
    ok(client.put("/v1/me/consents/biometric_processing", headers=alice), 201)
    ok(client.get("/v1/me/consents", headers=alice))
    selfie = ok(client.post("/v1/selfie/upload-url", headers=alice), 201)
    ok(client.get("/v1/me/selfie", headers=alice))  # pending: no download yet
    uploaded(client, selfie["uploadUrl"], SELFIE)
    ok(client.post(f"/v1/selfie/{selfie['selfieId']}/complete", headers=alice))
    mine = ok(client.get("/v1/me/selfie", headers=alice))
    assert get_presigned(client, mine["download"]["url"]).content == SELFIE
    ok(client.get("/v1/me/selfie", headers=bob), 404)

    # A photographer uploads from the app and from the dashboard.
    photo_ids = []
    for headers, route in (
        (pat, "/v1/photos/upload-url"),
        (pat_dashboard, "/v1/photographers/me/photos/upload-url"),
    ):
        photo = ok(client.post(route, json={"projectId": str(project)}, headers=headers), 201)
        ok(client.post(f"/v1/photos/{photo['photoId']}/complete", headers=headers), 409)
        uploaded(client, photo["uploadUrl"], PHOTO)
        ok(client.post(f"/v1/photos/{photo['photoId']}/complete", headers=headers))
        photo_ids.append(photo["photoId"])
    batch = ok(
        client.post(
            "/v1/photos/upload-urls", json={"projectId": str(project), "count": 2}, headers=pat
        ),
        201,
    )
    for photo in batch["items"]:
        uploaded(client, photo["uploadUrl"], PHOTO)
        ok(client.post(f"/v1/photos/{photo['photoId']}/complete", headers=pat))
        photo_ids.append(photo["photoId"])

    # The photographer and an operator read them back, one by one and page by page.
    for reader in (pat, pat_dashboard, olga):
        for photo_id in photo_ids:
            got = ok(client.get(f"/v1/photos/{photo_id}", headers=reader))
            assert get_presigned(client, got["downloads"]["original"]["url"]).content == PHOTO
        listing = f"/v1/projects/{project}/photos"
        page = ok(client.get(listing, params={"limit": 1}, headers=reader))
        ok(client.get(listing, params={"limit": 1, "cursor": page["nextCursor"]}, headers=reader))

    # The operator sets a profile picture; the bucket's notification settles it on S3.
    picture = ok(client.post(PROFILE_UPLOAD, headers=olga))
    assert picture["fileUrl"] == f"{R2_PUBLIC_URL}/operators/olga/profile.jpg"
    uploaded(client, picture["uploadUrl"], PICTURE)
    key = "operators/olga/profile.jpg"
    events = {"Authorization": "Bearer test-events-secret"}
    ok(client.post("/v1/storage/events", json=s3_event(settings.s3_bucket, key), headers=events))
    for reader in (alice, pat_dashboard, olga):
        shown = ok(client.get("/v1/operators/olga/profile-picture", headers=reader))
        # Served normalised (tests/media_api/test_profile_picture.py): a stripped JPEG.
        served = get_presigned(client, shown["url"]).content
        assert served[:3] == b"\xff\xd8\xff" and factories.jpeg_metadata_segments(served) == []

    # The project Pat's first upload created: read, renamed, staffed, listed.
    ok(client.get(f"/v1/projects/{project}", headers=pat))
    ok(client.patch(f"/v1/projects/{project}", json={"name": "Gala"}, headers=pat))
    ok(client.put(f"/v1/projects/{project}/photographers/paula", headers=olga))
    ok(client.delete(f"/v1/projects/{project}/photographers/paula", headers=olga))
    for reader in (pat, olga, alice):
        ok(client.get("/v1/projects", headers=reader))
    ok(client.delete(f"/v1/photos/{photo_ids.pop()}", headers=pat), 204)

    # Photos of me (no face engine here: an empty list, but the route is walked).
    ok(client.get("/v1/me/photos", params={"projectId": str(uuid.uuid4())}, headers=alice))
    ok(client.get("/v1/me/photos", headers=alice))
    ok(client.delete(f"/v1/me/photos/{photo_ids[0]}", headers=alice), 404)  # never matched
    ok(client.delete("/v1/me/selfie", headers=alice), 204)

    # The end user changes their mind.
    ok(client.delete("/v1/me/consents/biometric_processing", headers=alice))
    ok(client.get("/v1/me/consents", headers=alice))
    ok(client.get("/v1/me/consents/biometric_processing", headers=alice))
    ok(client.post("/v1/selfie/upload-url", headers=alice), 403)
    period = {"from": "2020-01-01T00:00:00Z", "to": "2100-01-01T00:00:00Z"}
    ok(client.get("/v1/consents/events", params=period, headers=olga))

    # The operator creates a project, then deletes Pat's: a job erases it.
    ok(client.post("/v1/projects", json={"name": "Wedding"}, headers=olga), 201)
    ok(client.delete(f"/v1/projects/{project}", headers=olga), 202)
    ok(client.get(f"/v1/projects/{project}/deletion", headers=olga))


def audit(transcript: Transcript, signing: Signing) -> list[str]:
    problems = []
    for exchange in transcript.exchanges:
        exempt = frozenset({"$.fileUrl"} if exchange.path == PROFILE_UPLOAD else ())
        found = url_problems(
            exchange.body,
            signing=signing,
            public_url=R2_PUBLIC_URL,
            signed_at=exchange.received_at,
            identifiers=exempt,
        )
        problems += [f"{exchange}: {problem}" for problem in found]
    return problems


def media_routes(app: FastAPI) -> list[tuple[str, str, re.Pattern[str]]]:
    """(method, path, regex) of every /v1 operation, from the OpenAPI schema (public, and
    complete however routers are nested)."""
    found = []
    for path, operations in app.openapi()["paths"].items():
        if not path.startswith("/v1/"):
            continue
        pattern = re.compile("^" + re.sub(r"\{[^/]+\}", "[^/]+", path) + "$")
        found += [(method.upper(), path, pattern) for method in operations]
    return found


@pytest.mark.parametrize("settings_overrides", [{"r2_public_url": R2_PUBLIC_URL}])
@pytest.mark.parametrize("backend", ["local", "s3"])
def test_no_response_carries_a_public_or_unsigned_url(
    app: FastAPI,
    client: TestClient,
    transcript: Transcript,
    make_token,
    settings: Settings,
    backend: str,
) -> None:
    try:
        client_session(client, make_token, settings)
    finally:
        # Also when the session broke off (e.g. fetching a public URL): the audit says why.
        assert audit(transcript, SIGNING[backend]) == []

    # Not vacuous: the session saw presigned URLs of both kinds, and the one public fileUrl.
    seen = [found for exchange in transcript.exchanges for found in strings(exchange.body)]
    signed = [path for path, text in seen if SIGNING[backend].signature in text]
    assert len(signed) >= 20
    assert {path.rpartition(".")[2] for path in signed} == {"uploadUrl", "url"}
    assert [path for path, text in seen if R2_PUBLIC_URL in text] == ["$.fileUrl"]

    routes = media_routes(app)
    assert len(routes) >= 15  # not vacuous
    untested = [
        f"{method} {path}"
        for method, path, pattern in routes
        if not any(
            exchange.method == method and pattern.match(exchange.path)
            for exchange in transcript.exchanges
        )
    ]
    assert untested == [], "add these routes to client_session"

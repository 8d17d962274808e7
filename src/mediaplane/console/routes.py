"""`/` and `/console/*`: the console's page, its static files, its config and the dev sign-in.

The page is a client of the public API like any other; the dev sign-in is the one endpoint that
exists for it alone, and it answers 404 unless the generated dev key signs tokens (no identity
provider configured), because only then can this service mint tokens it would itself accept.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import FileResponse
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from mediaplane.auth import AUDIENCE_BACKOFFICE, AUDIENCE_MEDIA, mint_dev_token
from mediaplane.errors import Forbidden, NotFound
from mediaplane.images_api.urls import images_origin
from mediaplane.settings import Settings
from mediaplane.storage import ObjectStore
from mediaplane.web import ProblemRoute

STATIC_DIR = Path(str(files("mediaplane.console") / "static"))

Role = Literal["user", "photographer", "operator"]

AUDIENCE_BY_ROLE: dict[str, str] = {
    "user": AUDIENCE_MEDIA,
    # The Media API's photographer endpoints (upload URL, photo views, project listing) all
    # take a `media` token; one token keeps the console to one identity at a time.
    "photographer": AUDIENCE_MEDIA,
    "operator": AUDIENCE_BACKOFFICE,
}

# Stable dev identities (those of the README's curl walk-through), so a newcomer who signs in
# again finds their photos, selfie and consent where they left them.
DEV_SUBJECTS: dict[str, str] = {
    "user": "11111111-1111-1111-1111-111111111111",
    "operator": "22222222-2222-2222-2222-222222222222",
    "photographer": "33333333-3333-3333-3333-333333333333",
}

DEV_TOKEN_TTL_SECONDS = 8 * 3600

router = APIRouter(route_class=ProblemRoute, tags=["console"], include_in_schema=False)


class CamelModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class ConsoleConfig(CamelModel):
    dev_sign_in: bool = Field(description="POST /console/dev-token is available.")
    public_url: str = Field(description="PUBLIC_URL: where local presigned URLs point.")


class DevTokenRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Role
    # The key-segment rule of uploads/keys.py: subjects become parts of storage keys.
    subject: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._@|:+=-]{0,127}$")


class DevToken(BaseModel):
    token: str
    audience: str
    role: Role
    subject: str


class NoCacheStaticFiles(StaticFiles):
    """Static files the browser revalidates (cheaply, by ETag) on every load: an upgraded
    service never runs with yesterday's modules."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers["Cache-Control"] = "no-cache"
        return response


LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "[::1]"})


def is_loopback_host(host_header: str | None) -> bool:
    """Whether a `Host` header names this machine's loopback (any port).

    A browser tricked by DNS rebinding sends the attacker's name here even though it connects
    to 127.0.0.1; checking the name, not the socket, is what defeats it.
    """
    host = (host_header or "").strip().lower()
    if host.startswith("["):
        name = host[: host.find("]") + 1] if "]" in host else host
        rest = host[len(name) :]
    else:
        name, _, port = host.partition(":")
        rest = f":{port}" if port else ""
    if rest and not (rest.startswith(":") and rest[1:].isdigit()):
        return False
    return name in LOOPBACK_HOSTS


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def content_security_policy(settings: Settings, store: ObjectStore) -> str:
    """Only this service, plus the origins presigned URLs (and IMAGES_HOST) point at."""
    # Presigning is local computation (no request to the store): the one place that builds
    # presigned URLs tells where they lead, whatever the backend.
    probe = urlsplit(store.presign_get("console/csp-probe", expires_in=60))
    extra = {f"{probe.scheme}://{probe.netloc}"}
    if settings.images_host:
        extra.add(images_origin(settings.images_host))
    others = " ".join(sorted(extra))
    return (
        "default-src 'self'; script-src 'self'; style-src 'self'; "
        f"img-src 'self' {others}; connect-src 'self' {others}; "
        "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )


@router.get("/", response_class=FileResponse)
def index(request: Request) -> FileResponse:
    """The console's page."""
    headers = {
        "Cache-Control": "no-cache",
        "Content-Security-Policy": content_security_policy(
            _settings(request), request.app.state.store
        ),
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
    }
    return FileResponse(STATIC_DIR / "index.html", media_type="text/html", headers=headers)


@router.get("/console/config", response_model=ConsoleConfig)
def config(request: Request) -> ConsoleConfig:
    """What the page needs to know before sign-in."""
    settings = _settings(request)
    available = settings.dev_sign_in and is_loopback_host(request.headers.get("host"))
    return ConsoleConfig(dev_sign_in=available, public_url=settings.public_url)


@router.post("/console/dev-token", response_model=DevToken)
def dev_token(body: DevTokenRequest, request: Request) -> DevToken:
    """A token for a dev identity, signed with the dev key; 404 when a JWT key is configured,
    403 when the request is not addressed to a loopback host (DNS rebinding)."""
    settings = _settings(request)
    if not settings.dev_sign_in:
        raise NotFound(
            "dev_sign_in_disabled",
            "dev sign-in is off: a JWT key source is configured, or the server is not bound to "
            "a loopback address (CONSOLE_DEV_SIGN_IN=true enables it)",
        )
    if not is_loopback_host(request.headers.get("host")):
        raise Forbidden(
            "dev_sign_in_loopback_only",
            "dev sign-in answers only requests addressed to localhost, 127.0.0.1 or [::1]",
        )
    subject = body.subject or DEV_SUBJECTS[body.role]
    audience = AUDIENCE_BY_ROLE[body.role]
    token = mint_dev_token(
        settings,
        subject=subject,
        audience=audience,
        roles=[body.role],
        ttl_seconds=DEV_TOKEN_TTL_SECONDS,
    )
    return DevToken(token=token, audience=audience, role=body.role, subject=subject)


def mount_console(app: FastAPI) -> None:
    """Serve the console: its routes, then its static files under /console/."""
    app.include_router(router)
    app.mount("/console", NoCacheStaticFiles(directory=STATIC_DIR), name="console")

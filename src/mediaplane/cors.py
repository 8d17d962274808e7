"""CORS: which browser pages on other origins may call which routes (docs/cors.md).

A pure ASGI middleware (no `BaseHTTPMiddleware`: upload and download bodies stream through
untouched). Each route family takes the methods and request headers it really uses, and only
the origins listed in `CORS_ALLOWED_ORIGINS`; with none listed, nothing cross-origin is allowed
and preflights get what they got before (405). Credentials (cookies) are never allowed: every
API here authenticates with a bearer token or a signature in the URL, never a cookie.

The public image GETs (`/_images/APP/OBJECT/{profile,original}`) are readable from any page
(`Access-Control-Allow-Origin: *`), whatever the setting: they are public by contract and
carry no credentials, and a page must be able to draw them on a canvas.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from starlette.datastructures import Headers, MutableHeaders
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# How long a browser may reuse a preflight's answer.
PREFLIGHT_MAX_AGE = 600
# Response headers a cross-origin page may read besides the CORS-safelisted ones.
EXPOSED_HEADERS = "ETag, X-Request-Id, Location"


@dataclass(frozen=True)
class CorsRoute:
    """A family of paths, and what a cross-origin request to them may use."""

    pattern: re.Pattern[str]
    methods: tuple[str, ...]
    headers: tuple[str, ...]


ROUTES: Sequence[CorsRoute] = (
    CorsRoute(
        re.compile(r"/v1/.*"), ("GET", "POST", "PUT", "DELETE"), ("Authorization", "Content-Type")
    ),
    CorsRoute(
        re.compile(r"/api/images/upload"), ("GET", "POST"), ("Authorization", "Content-Type")
    ),
    CorsRoute(
        re.compile(r"/_api/admin/images/upload"),
        ("GET", "POST"),
        ("Authorization", "Content-Type"),
    ),
    # The signed multipart upload of the Images server: the signature is in the URL.
    CorsRoute(re.compile(r"/_images/[^/]+/[^/]+"), ("POST",), ("Content-Type",)),
    # Local-disk presigned URLs: a PUT signed for a Content-Type, and GETs.
    CorsRoute(re.compile(r"/_storage/.+"), ("GET", "PUT"), ("Content-Type",)),
)
PUBLIC_IMAGE = re.compile(r"/_images/[^/]+/[^/]+/[^/]+")


def route_for(path: str) -> CorsRoute | None:
    return next((route for route in ROUTES if route.pattern.fullmatch(path)), None)


class Cors:
    """Answers preflights of the listed origins; labels their responses; see the module."""

    def __init__(self, app: ASGIApp, *, allowed_origins: Sequence[str]) -> None:
        self.app = app
        self.allowed_origins = frozenset(allowed_origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        method: str = scope["method"]
        headers = Headers(scope=scope)
        origin = headers.get("origin")
        if method in ("GET", "HEAD") and PUBLIC_IMAGE.fullmatch(path):
            await self.app(scope, receive, _labelled(send, {"access-control-allow-origin": "*"}))
            return
        route = route_for(path) if self.allowed_origins else None
        if origin is None or route is None:
            await self.app(scope, receive, send)
            return
        requested = headers.get("access-control-request-method")
        if method == "OPTIONS" and requested is not None:
            response = self._preflight(origin, route, requested, headers)
            await response(scope, receive, send)
            return
        if origin not in self.allowed_origins:
            await self.app(scope, receive, send)  # no CORS headers: the browser refuses it
            return
        cors = {
            "access-control-allow-origin": origin,
            "access-control-expose-headers": EXPOSED_HEADERS,
        }
        await self.app(scope, receive, _labelled(send, cors, vary=True))

    def _preflight(self, origin: str, route: CorsRoute, method: str, headers: Headers) -> Response:
        if origin not in self.allowed_origins:
            return _refused("cors_origin_not_allowed", f"origin {origin} is not allowed")
        if method.upper() not in route.methods:
            allowed = ", ".join(route.methods)
            return _refused("cors_method_not_allowed", f"{method} is not allowed here: {allowed}")
        wanted = [h.strip() for h in headers.get("access-control-request-headers", "").split(",")]
        allowed_headers = {h.lower() for h in route.headers}
        extra = [h for h in wanted if h and h.lower() not in allowed_headers]
        if extra:
            names = ", ".join(route.headers)
            return _refused(
                "cors_header_not_allowed", f"headers {', '.join(extra)} are not allowed: {names}"
            )
        return Response(
            status_code=204,
            headers={
                "Access-Control-Allow-Origin": origin,
                "Access-Control-Allow-Methods": ", ".join(route.methods),
                "Access-Control-Allow-Headers": ", ".join(route.headers),
                "Access-Control-Max-Age": str(PREFLIGHT_MAX_AGE),
                "Vary": "Origin",
            },
        )


def _refused(code: str, detail: str) -> Response:
    # No CORS headers: the browser blocks the request. The body is for whoever reads it.
    body = {
        "type": f"urn:mediaplane:error:{code}",
        "title": "CORS preflight refused",
        "status": 403,
        "code": code,
        "detail": detail,
    }
    return JSONResponse(body, status_code=403, media_type="application/problem+json")


def _labelled(send: Send, cors: dict[str, str], *, vary: bool = False) -> Send:
    async def labelled(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = MutableHeaders(scope=message)
            for name, value in cors.items():
                headers[name] = value
            if vary:
                headers.add_vary_header("Origin")
        await send(message)

    return labelled

"""HTTP error rendering shared by routers: one route class per error shape.

A router declares its shape with `APIRouter(route_class=...)`; the route class catches domain
errors (`MediaplaneError`) and request validation errors raised anywhere in the route,
dependencies included, and renders them; a dependency that is down (database, object store:
`faults.outage_of`) is rendered as the 503 `Unavailable` error it stands for. `ProblemRoute`
renders RFC 9457 problem+json (Media API, storage routes); the Images server defines its own
Authgear-shaped class.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute

from mediaplane.access_log import current_request_id
from mediaplane.errors import ErrorKind, MediaplaneError
from mediaplane.faults import outage_of

log = logging.getLogger(__name__)

STATUS_BY_KIND: dict[ErrorKind, int] = {
    ErrorKind.INVALID: 400,
    ErrorKind.UNAUTHENTICATED: 401,
    ErrorKind.FORBIDDEN: 403,
    ErrorKind.NOT_FOUND: 404,
    ErrorKind.CONFLICT: 409,
    ErrorKind.TOO_LARGE: 413,
    ErrorKind.UNSUPPORTED_TYPE: 415,
    ErrorKind.RATE_LIMITED: 429,
    ErrorKind.UNAVAILABLE: 503,
}


def error_headers(exc: MediaplaneError) -> dict[str, str]:
    headers: dict[str, str] = {}
    if exc.kind is ErrorKind.UNAUTHENTICATED:
        # RFC 6750 §3.1: no `error` attribute when the request carried no credentials at all.
        headers["WWW-Authenticate"] = (
            "Bearer"
            if exc.reason == "missing_token"
            else f'Bearer error="invalid_token", error_description="{exc.reason}"'
        )
    if exc.retry_after is not None:
        headers["Retry-After"] = str(exc.retry_after)
    return headers


def with_request_id(body: dict[str, Any], request_id: str | None = None) -> dict[str, Any]:
    """A problem body with the `requestId` extension member (RFC 9457 §3.2): the id a user
    quotes, also in the `X-Request-Id` header and the access log."""
    request_id = request_id or current_request_id()
    if request_id:
        body["requestId"] = request_id
    return body


def problem_response(exc: MediaplaneError) -> JSONResponse:
    status = STATUS_BY_KIND[exc.kind]
    body: dict[str, Any] = {
        "type": f"urn:mediaplane:error:{exc.reason}",
        "title": exc.kind.value.replace("_", " "),
        "status": status,
        "code": exc.reason,
        "detail": exc.message,
    }
    if exc.details:
        body["errors"] = exc.details
    return JSONResponse(
        with_request_id(body),
        status_code=status,
        headers=error_headers(exc),
        media_type="application/problem+json",
    )


def validation_problem(exc: RequestValidationError) -> JSONResponse:
    errors = [
        {"loc": list(err.get("loc", ())), "msg": err.get("msg", ""), "type": err.get("type", "")}
        for err in exc.errors()
    ]
    body = {
        "type": "urn:mediaplane:error:validation_failed",
        "title": "unprocessable content",
        "status": 422,
        "code": "validation_failed",
        "detail": "the request does not match the expected shape",
        "errors": errors,
    }
    return JSONResponse(
        with_request_id(body), status_code=422, media_type="application/problem+json"
    )


Handler = Callable[[Request], Coroutine[Any, Any, Response]]


def as_domain_error(request: Request, exc: Exception) -> MediaplaneError | None:
    """The domain error an unexpected exception stands for (an outage), logged once; None for
    a real bug, which the caller re-raises."""
    outage = outage_of(exc)
    if outage is not None:
        # One line, no traceback: the cause is outside the service, and an outage would
        # otherwise flood the log with identical stacks.
        log.warning(
            "%s %s: %s (%s: %s)",
            request.method,
            request.url.path,
            outage.reason,
            type(exc).__name__,
            str(exc).splitlines()[0] if str(exc) else "",
        )
    return outage


class ProblemRoute(APIRoute):
    """Renders domain and validation errors as application/problem+json."""

    def get_route_handler(self) -> Handler:
        handler = self.handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except MediaplaneError as exc:
                return problem_response(exc)
            except RequestValidationError as exc:
                return validation_problem(exc)
            except Exception as exc:
                outage = as_domain_error(request, exc)
                if outage is None:
                    raise
                return problem_response(outage)

        return route

    def handler(self) -> Handler:
        """The handler whose errors are rendered: FastAPI's."""
        return super().get_route_handler()


FastPath = Callable[[Request], Coroutine[Any, Any, Response | None]]


def fast_path_route(fast: FastPath) -> type[ProblemRoute]:
    """A `ProblemRoute` that tries `fast(request)` before FastAPI's handling of the route.

    For a hot route whose framework work (dependency solving, the thread pool, response
    validation) costs more than its own: `fast` handles the common, well-formed request by hand
    and returns None for anything else (no token, a body it does not parse), which then goes
    through the route as declared, so every error keeps its exact shape. Errors `fast` raises
    are rendered like the route's. The declared route also documents it in OpenAPI.
    """

    class FastPathRoute(ProblemRoute):
        def handler(self) -> Handler:
            full = super().handler()

            async def either(request: Request) -> Response:
                response = await fast(request)
                return response if response is not None else await full(request)

            return either

    return FastPathRoute

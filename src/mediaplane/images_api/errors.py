"""Authgear's error shape for every Images endpoint:
`{"error": {"name": "Invalid", "reason": "InvalidSignature", "message": "...", "code": 400,
"info": {"request_id": "..."}}}`; `info` also carries the details of some errors (`causes`).
"""

from __future__ import annotations

from typing import Any

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute

from mediaplane.access_log import current_request_id
from mediaplane.errors import ErrorKind, MediaplaneError
from mediaplane.web import STATUS_BY_KIND, Handler, as_domain_error, error_headers

# Paths answered in this shape, also when the answer comes from before routing (body limit).
IMAGES_PATH_PREFIXES = ("/_images/", "/api/images/", "/_api/admin/images/")

NAME_BY_KIND = {
    ErrorKind.INVALID: "Invalid",
    ErrorKind.UNAUTHENTICATED: "Unauthorized",
    ErrorKind.FORBIDDEN: "Forbidden",
    ErrorKind.NOT_FOUND: "NotFound",
    ErrorKind.CONFLICT: "AlreadyExists",
    ErrorKind.TOO_LARGE: "RequestEntityTooLarge",
    ErrorKind.UNSUPPORTED_TYPE: "UnsupportedMediaType",
    ErrorKind.RATE_LIMITED: "TooManyRequest",
    ErrorKind.UNAVAILABLE: "ServiceUnavailable",
}


def pascal_case(reason: str) -> str:
    """Authgear spells reasons in PascalCase: `invalid_signature` → `InvalidSignature`."""
    return "".join(part[:1].upper() + part[1:] for part in reason.split("_"))


def authgear_error(
    kind: ErrorKind,
    reason: str,
    message: str,
    *,
    info: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    status = STATUS_BY_KIND[kind]
    error: dict[str, Any] = {
        "name": NAME_BY_KIND[kind],
        "reason": pascal_case(reason),
        "message": message,
        "code": status,
    }
    # The id a user quotes (also in the X-Request-Id header and the access log).
    request_id = current_request_id()
    if info or request_id:
        error["info"] = {**(info or {}), **({"request_id": request_id} if request_id else {})}
    return JSONResponse({"error": error}, status_code=status, headers=headers)


def authgear_response(exc: MediaplaneError) -> JSONResponse:
    """A domain error in Authgear's shape."""
    return authgear_error(
        exc.kind, exc.reason, exc.message, info=exc.details or None, headers=error_headers(exc)
    )


class AuthgearRoute(APIRoute):
    def get_route_handler(self) -> Handler:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except MediaplaneError as exc:
                return authgear_response(exc)
            except RequestValidationError as exc:
                causes = [
                    {"location": list(e.get("loc", ())), "message": e.get("msg", "")}
                    for e in exc.errors()
                ]
                return authgear_error(
                    ErrorKind.INVALID,
                    "validation_failed",
                    "invalid request body",
                    info={"causes": causes},
                )
            except Exception as exc:
                outage = as_domain_error(request, exc)
                if outage is None:
                    raise
                return authgear_response(outage)

        return route

"""`require_principal`: the FastAPI dependency that guards a route with a bearer JWT."""

from __future__ import annotations

from collections.abc import Callable, Collection

from fastapi import Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from mediaplane.auth.tokens import Principal, TokenVerifier
from mediaplane.errors import Forbidden, Unauthenticated

# auto_error=False: a missing or non-Bearer header becomes our own `missing_token` error, rendered
# by the router's error shape; HTTPBearer is here so OpenAPI documents the scheme.
_bearer = HTTPBearer(auto_error=False, description="A JWT; in dev, `mediaplane token`.")


def require_principal(*audiences: str, roles: Collection[str] = ()) -> Callable[..., Principal]:
    """A dependency returning the caller's `Principal` for a token meant for one of `audiences`.

    With `roles`, the caller needs at least one of them (else 403 `insufficient_role`). Use as
    `principal: Principal = Depends(require_principal(AUDIENCE_MEDIA))`; the verifier is the
    `TokenVerifier` at `app.state.verifier`.
    """
    if not audiences:
        raise ValueError("require_principal needs at least one audience")
    if isinstance(roles, str):
        raise TypeError("roles must be a collection of role names, not one str")
    accepted = tuple(audiences)
    wanted = frozenset(roles)

    # A plain `def`, not `async def`: FastAPI runs it in the thread pool, so a JWKS fetch
    # (blocking urllib inside PyJWKClient) never stalls the event loop.
    def principal(
        request: Request,
        credentials: HTTPAuthorizationCredentials | None = Security(_bearer),
    ) -> Principal:
        if credentials is None:
            raise Unauthenticated("missing_token", "send Authorization: Bearer <token>")
        verifier: TokenVerifier = request.app.state.verifier
        found = verifier.verify(credentials.credentials, audiences=accepted)
        if wanted and found.roles.isdisjoint(wanted):
            raise Forbidden(
                "insufficient_role", f"requires one of the roles: {', '.join(sorted(wanted))}"
            )
        return found

    return principal

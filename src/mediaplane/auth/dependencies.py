"""`require_principal`: the FastAPI dependency that guards a route with a bearer JWT."""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass

import anyio.to_thread
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
    return Guard.of(*audiences, roles=roles).dependency()


@dataclass(frozen=True)
class Guard:
    """What `require_principal` checks: as a dependency, or from a route's fast path."""

    audiences: tuple[str, ...]
    roles: frozenset[str]

    @classmethod
    def of(cls, *audiences: str, roles: Collection[str] = ()) -> Guard:
        if not audiences:
            raise ValueError("require_principal needs at least one audience")
        if isinstance(roles, str):
            raise TypeError("roles must be a collection of role names, not one str")
        return cls(tuple(audiences), frozenset(roles))

    def dependency(self) -> Callable[..., Principal]:
        # A plain `def`, not `async def`: FastAPI runs it in the thread pool, so a JWKS fetch
        # (blocking urllib inside PyJWKClient) never stalls the event loop.
        def principal(
            request: Request,
            credentials: HTTPAuthorizationCredentials | None = Security(_bearer),
        ) -> Principal:
            return self.check(request, credentials)

        return principal

    def check(
        self, request: Request, credentials: HTTPAuthorizationCredentials | None
    ) -> Principal:
        if credentials is None:
            raise Unauthenticated("missing_token", "send Authorization: Bearer <token>")
        verifier: TokenVerifier = request.app.state.verifier
        found = verifier.verify(credentials.credentials, audiences=self.audiences)
        if self.roles and found.roles.isdisjoint(self.roles):
            raise Forbidden(
                "insufficient_role",
                f"requires one of the roles: {', '.join(sorted(self.roles))}",
            )
        return found

    async def check_on_loop(self, request: Request) -> Principal | None:
        """The dependency's answer, for an `async` fast path (`web.fast_path_route`): None when
        the request has no bearer token (the full route answers it), else the `Principal` or the
        same error. On the event loop when the verifier never blocks (a configured or dev key:
        CPU only, ~0.2 ms), else in the thread pool (it may fetch the JWKS)."""
        credentials = await _bearer(request)
        if credentials is None:
            return None
        verifier: TokenVerifier = request.app.state.verifier
        if verifier.may_block:
            return await anyio.to_thread.run_sync(self.check, request, credentials)
        return self.check(request, credentials)

"""`require_consent`: the one guard for routes that need a user's consent to a purpose."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import Depends, Request

from mediaplane.auth import Principal
from mediaplane.consent import service
from mediaplane.consent.purposes import Purpose
from mediaplane.db import Database
from mediaplane.errors import Forbidden


def require_consent(
    purpose: Purpose | str, *, principal: Callable[..., Principal]
) -> Callable[..., Principal]:
    """A dependency returning the caller's `Principal` when they actively consent to `purpose`.

    `principal` authenticates first (e.g. `require_principal(AUDIENCE_MEDIA, roles=["user"])`),
    so a missing token is still 401; without an active consent the answer is 403
    `consent_required`. An unknown `purpose` raises `ValueError` here, when the route module
    loads, not on the first request.

    The check runs in its own short transaction: it gates the HTTP request. Work that stores
    biometric data later (a job) re-checks with `has_active(..., lock=True)` in its transaction.
    """
    try:
        wanted = Purpose(purpose)
    except ValueError:
        known = ", ".join(p.value for p in Purpose)
        raise ValueError(f"unknown consent purpose {purpose!r}; known: {known}") from None

    def consenting(request: Request, caller: Principal = Depends(principal)) -> Principal:
        db: Database = request.app.state.db
        with db.transaction() as session:
            granted = service.has_active(session, user_id=caller.subject, purpose=wanted)
        if not granted:
            raise Forbidden(
                "consent_required",
                f"this needs your consent to {wanted.value}: "
                f"PUT /v1/me/consents/{wanted.value} to grant it",
            )
        return caller

    return consenting

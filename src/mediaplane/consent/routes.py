"""/v1/me/consents: a user grants, revokes and lists their own consents."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Body, Depends, Path, Query, Request, Response

from mediaplane.auth import AUDIENCE_BACKOFFICE, AUDIENCE_MEDIA, Principal, require_principal
from mediaplane.consent import service
from mediaplane.consent.purposes import Purpose
from mediaplane.consent.schemas import (
    AuditEvent,
    ConsentAudit,
    ConsentEventOut,
    ConsentHistory,
    ConsentList,
    ConsentOut,
    GrantRequest,
)
from mediaplane.db import Database
from mediaplane.errors import InvalidInput, NotFound
from mediaplane.web import ProblemRoute

router = APIRouter(prefix="/v1/me/consents", route_class=ProblemRoute, tags=["consent"])

_user = require_principal(AUDIENCE_MEDIA, roles=["user"])

_PURPOSE_PATH = Path(description="One of: " + ", ".join(p.value for p in Purpose))


def _db(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


def _purpose(name: str) -> Purpose:
    # Parsed in the handler, after authentication: a caller without a token learns nothing.
    try:
        return Purpose(name)
    except ValueError:
        raise NotFound("unknown_purpose", f"no consent purpose named {name!r}") from None


@router.get("", response_model=ConsentList)
def list_consents(
    principal: Principal = Depends(_user), db: Database = Depends(_db)
) -> ConsentList:
    """The caller's consent history, active and revoked, newest first."""
    with db.transaction() as session:
        consents = service.list(session, user_id=principal.subject)
    return ConsentList(items=[ConsentOut.of(c) for c in consents])


@router.get("/{purpose}", response_model=ConsentHistory)
def consent_history(
    purpose: str = _PURPOSE_PATH,
    principal: Principal = Depends(_user),
    db: Database = Depends(_db),
) -> ConsentHistory:
    """The caller's consent to `purpose`: its status and every grant and revocation, with times."""
    wanted = _purpose(purpose)
    with db.transaction() as session:
        events = service.history(session, user_id=principal.subject, purpose=wanted)
    status: Literal["active", "revoked", "never"] = "never"
    if events:
        status = "active" if events[-1].event == "granted" else "revoked"
    return ConsentHistory(
        purpose=wanted,
        status=status,
        history=[ConsentEventOut(event=e.event, at=e.at, source=e.source) for e in events],
    )


@router.put(
    "/{purpose}",
    response_model=ConsentOut,
    responses={
        201: {"model": ConsentOut, "description": "Newly granted"},
        404: {"description": "`unknown_purpose`"},
    },
)
def grant_consent(
    response: Response,
    purpose: str = _PURPOSE_PATH,
    body: GrantRequest | None = Body(default=None),
    principal: Principal = Depends(_user),
    db: Database = Depends(_db),
) -> ConsentOut:
    """Grant consent to `purpose`: 201 when new, 200 when it was already active (unchanged)."""
    wanted = _purpose(purpose)
    source = (body or GrantRequest()).source
    with db.transaction() as session:
        consent, created = service.grant(
            session, user_id=principal.subject, purpose=wanted, source=source
        )
    response.status_code = 201 if created else 200
    return ConsentOut.of(consent)


@router.delete(
    "/{purpose}",
    response_model=ConsentOut,
    responses={404: {"description": "`unknown_purpose`, or `consent_not_found` (none active)"}},
)
def revoke_consent(
    purpose: str = _PURPOSE_PATH,
    principal: Principal = Depends(_user),
    db: Database = Depends(_db),
) -> ConsentOut:
    """Revoke the active consent to `purpose` (kept in the history); 404 when none is active."""
    wanted = _purpose(purpose)
    with db.transaction() as session:
        consent = service.revoke(session, user_id=principal.subject, purpose=wanted)
    return ConsentOut.of(consent)


audit_router = APIRouter(prefix="/v1/consents", route_class=ProblemRoute, tags=["consent"])
_operator = require_principal(AUDIENCE_BACKOFFICE, roles=["operator"])


@audit_router.get("/events", response_model=ConsentAudit)
def consent_events(
    since: Annotated[datetime, Query(alias="from", description="Start, included (ISO 8601).")],
    until: Annotated[datetime, Query(alias="to", description="End, excluded (ISO 8601).")],
    principal: Principal = Depends(_operator),
    db: Database = Depends(_db),
) -> ConsentAudit:
    """Every consent grant and revocation of the period, for an audit (operators)."""
    if since.tzinfo is None or until.tzinfo is None:
        raise InvalidInput("naive_datetime", "give from and to with a time zone (…Z)")
    if until <= since:
        raise InvalidInput("invalid_period", "`to` must be after `from`")
    with db.transaction() as session:
        found = service.events(session, since=since, until=until)
    return ConsentAudit.model_validate(
        {
            "from": since,
            "to": until,
            "items": [
                AuditEvent(
                    user_id=e.user_id, purpose=e.purpose, event=e.event, at=e.at, source=e.source
                )
                for e in found
            ],
        }
    )

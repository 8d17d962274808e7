"""Grant, revoke, list and check consents. Rows are never deleted, so the history stays.

Routes and jobs own the transaction; these functions only write through the session and flush.
Concurrency: the partial unique index `uq_consents_active` allows one active row per user and
purpose; `grant` inserts with `ON CONFLICT DO NOTHING` on it, and `revoke` locks the active row,
so racing requests can neither create two active rows nor revoke (and publish) twice.
"""

from __future__ import annotations

import builtins
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy import and_, func, or_, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from mediaplane.consent.events import ConsentRevoked, publish
from mediaplane.consent.models import Consent
from mediaplane.consent.purposes import Purpose
from mediaplane.errors import Conflict, NotFound

# A grant that finds an active row, then finds it revoked before reading it, tries again; more
# than a few rounds means something revokes in a loop, and the caller may retry.
_GRANT_ATTEMPTS = 3


def _active(
    session: Session, *, user_id: str, purpose: Purpose, lock: Literal["update", "share"] | None
) -> Consent | None:
    query = select(Consent).where(
        Consent.user_id == user_id,
        Consent.purpose == purpose.value,
        Consent.revoked_at.is_(None),
    )
    if lock == "update":
        query = query.with_for_update()
    elif lock == "share":
        query = query.with_for_update(read=True)
    # populate_existing: a row already in the session must show what the database holds now.
    return session.scalars(query.execution_options(populate_existing=True)).one_or_none()


def grant(session: Session, *, user_id: str, purpose: Purpose, source: str) -> tuple[Consent, bool]:
    """Record consent to `purpose`; returns the active consent and whether it is new."""
    for _ in range(_GRANT_ATTEMPTS):
        # Waits for a concurrent uncommitted grant or revoke of the same pair, then either
        # inserts or does nothing, without an error that would abort the transaction.
        inserted = session.scalars(
            insert(Consent)
            .values(
                id=uuid.uuid4(),
                user_id=user_id,
                purpose=purpose.value,
                granted_at=func.now(),
                source=source,
            )
            .on_conflict_do_nothing(
                index_elements=[Consent.user_id, Consent.purpose],
                index_where=Consent.revoked_at.is_(None),
            )
            .returning(Consent)
        ).one_or_none()
        if inserted is not None:
            return inserted, True
        active = _active(session, user_id=user_id, purpose=purpose, lock=None)
        if active is not None:
            return active, False
    raise Conflict("consent_contended", "the consent changed concurrently; try again")


def revoke(session: Session, *, user_id: str, purpose: Purpose) -> Consent:
    """Mark the active consent revoked and publish `ConsentRevoked` in this transaction."""
    # FOR UPDATE: a concurrent revoke waits here, then finds no active row (404) instead of
    # publishing a second time.
    consent = _active(session, user_id=user_id, purpose=purpose, lock="update")
    if consent is None:
        raise NotFound("consent_not_found", f"no active consent to {purpose.value}")
    consent.revoked_at = session.scalar(select(func.now()))
    session.flush()
    assert consent.revoked_at is not None
    publish(session, ConsentRevoked(user_id, purpose, consent.revoked_at))
    return consent


def list(session: Session, *, user_id: str) -> builtins.list[Consent]:
    """Every consent of `user_id`, active and revoked, newest grant first."""
    query = (
        select(Consent)
        .where(Consent.user_id == user_id)
        .order_by(Consent.granted_at.desc(), Consent.revoked_at.desc().nulls_first())
    )
    return builtins.list(session.scalars(query))


def has_active(session: Session, *, user_id: str, purpose: Purpose, lock: bool = False) -> bool:
    """Whether `user_id` currently consents to `purpose`.

    With `lock`, the active row is share-locked until the transaction ends: a concurrent revoke
    then waits, so its erasure runs after (and sees) whatever this transaction writes. Jobs that
    store biometric data check this way.
    """
    return (
        _active(session, user_id=user_id, purpose=purpose, lock="share" if lock else None)
        is not None
    )


@dataclass(frozen=True)
class ConsentEvent:
    """A grant or a revocation, as the audit export lists it."""

    user_id: str
    purpose: str
    event: Literal["granted", "revoked"]
    at: datetime
    source: str


def history(session: Session, *, user_id: str, purpose: Purpose) -> builtins.list[ConsentEvent]:
    """Every grant and revocation of `user_id` for `purpose`, oldest first."""
    rows = session.scalars(
        select(Consent).where(Consent.user_id == user_id, Consent.purpose == purpose)
    )
    return sorted(_events(rows), key=lambda e: (e.at, e.event == "revoked"))


def events(session: Session, *, since: datetime, until: datetime) -> builtins.list[ConsentEvent]:
    """Every grant and revocation (any user, any purpose) at `since` <= time < `until`,
    oldest first: the operators' audit export."""
    rows = session.scalars(
        select(Consent).where(
            or_(
                and_(Consent.granted_at >= since, Consent.granted_at < until),
                and_(Consent.revoked_at >= since, Consent.revoked_at < until),
            )
        )
    )
    found = [e for e in _events(rows) if since <= e.at < until]
    return sorted(found, key=lambda e: (e.at, e.user_id, e.purpose, e.event == "revoked"))


def _events(rows: Iterable[Consent]) -> builtins.list[ConsentEvent]:
    found = []
    for c in rows:
        found.append(ConsentEvent(c.user_id, c.purpose, "granted", c.granted_at, c.source))
        if c.revoked_at is not None:
            found.append(ConsentEvent(c.user_id, c.purpose, "revoked", c.revoked_at, c.source))
    return found

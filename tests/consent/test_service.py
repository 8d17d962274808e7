"""The service under load and its revocation event: one active row, one event, one transaction."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from mediaplane import consent
from mediaplane.consent import Consent, ConsentRevoked, Purpose, subscribe
from mediaplane.db import Database
from mediaplane.errors import NotFound
from mediaplane.runtime import Runtime

BIOMETRIC = "/v1/me/consents/biometric_processing"


@pytest.fixture
def db(runtime: Runtime) -> Database:
    return runtime.database


@pytest.fixture
def on_revoked() -> Iterator[Callable[[Callable[[Session, ConsentRevoked], None]], None]]:
    """Subscribe handlers for one test; they are unsubscribed afterwards."""
    unsubscribes: list[Callable[[], None]] = []
    yield lambda handler: unsubscribes.append(subscribe(handler))
    for unsubscribe in unsubscribes:
        unsubscribe()


@pytest.fixture
def revocations(on_revoked) -> list[ConsentRevoked]:
    seen: list[ConsentRevoked] = []
    on_revoked(lambda session, event: seen.append(event))
    return seen


def rows(db: Database, user_id: str) -> list[Consent]:
    with db.transaction() as session:
        return consent.list(session, user_id=user_id)


def active_count(db: Database, user_id: str) -> int:
    with db.transaction() as session:
        return session.scalar(
            select(func.count())
            .select_from(Consent)
            .where(Consent.user_id == user_id, Consent.revoked_at.is_(None))
        )


def wait_until_blocked(db: Database, count: int = 1) -> None:
    """Return once `count` sessions of the test database wait on a lock (or fail after 5 s)."""
    query = text(
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        with db.engine.connect() as conn:
            if conn.scalar(query) >= count:
                return
        time.sleep(0.01)
    raise AssertionError("no session blocked on a lock")


def in_thread(fn: Callable[[], Any]) -> Callable[[], Any]:
    """Start `fn` in a thread now; the returned function joins and returns its result."""
    pool = ThreadPoolExecutor(max_workers=1)
    future = pool.submit(fn)
    pool.shutdown(wait=False)
    return lambda: future.result(timeout=10)


# --- the event ---------------------------------------------------------------------------------


def test_each_revocation_publishes_once_inside_its_transaction(
    client: TestClient, alice, db: Database, on_revoked
) -> None:
    seen: list[tuple[ConsentRevoked, bool, bool]] = []

    def handler(session: Session, event: ConsentRevoked) -> None:
        # Inside the transaction: this session sees the revocation, other connections not yet.
        inside = not consent.has_active(session, user_id=event.user_id, purpose=event.purpose)
        with db.transaction() as other:
            outside = consent.has_active(other, user_id=event.user_id, purpose=event.purpose)
        seen.append((event, inside, outside))

    on_revoked(handler)
    client.put(BIOMETRIC, headers=alice)
    first = client.delete(BIOMETRIC, headers=alice).json()
    assert client.delete(BIOMETRIC, headers=alice).status_code == 404
    client.put(BIOMETRIC, headers=alice)
    client.delete(BIOMETRIC, headers=alice)

    assert len(seen) == 2
    event, inside, outside = seen[0]
    assert (event.user_id, event.purpose, inside, outside) == (
        "alice",
        Purpose.BIOMETRIC_PROCESSING,
        True,
        True,
    )
    assert event.revoked_at == rows(db, "alice")[1].revoked_at
    assert datetime.fromisoformat(first["revokedAt"]) == event.revoked_at


def test_a_failing_handler_rolls_the_revocation_back(
    client: TestClient, alice, db: Database, on_revoked
) -> None:
    def erase(session: Session, event: ConsentRevoked) -> None:
        session.execute(text("SELECT 1"))
        raise RuntimeError("could not erase face vectors")

    client.put(BIOMETRIC, headers=alice)
    on_revoked(erase)
    resp = client.delete(BIOMETRIC, headers=alice)
    assert resp.status_code == 500
    assert resp.json()["code"] == "internal_error"
    assert [c.revoked_at for c in rows(db, "alice")] == [None]
    items = client.get("/v1/me/consents", headers=alice).json()["items"]
    assert [item["status"] for item in items] == ["active"]


def test_unsubscribed_handlers_hear_nothing(client: TestClient, alice) -> None:
    seen: list[ConsentRevoked] = []
    unsubscribe = subscribe(lambda session, event: seen.append(event))
    unsubscribe()
    unsubscribe()  # harmless twice
    client.put(BIOMETRIC, headers=alice)
    client.delete(BIOMETRIC, headers=alice)
    assert seen == []


# --- the verbs and the transaction ---------------------------------------------------------------


def test_the_service_never_commits(db: Database) -> None:
    with db.sessions() as session:
        consent.grant(session, user_id="u", purpose=Purpose.BIOMETRIC_PROCESSING, source="t")
        assert consent.has_active(session, user_id="u", purpose=Purpose.BIOMETRIC_PROCESSING)
        session.rollback()
    assert rows(db, "u") == []


def test_grant_revoke_grant_in_one_transaction(db: Database, revocations) -> None:
    with db.transaction() as session:
        first, new = consent.grant(
            session, user_id="u", purpose=Purpose.MARKETING_EMAIL, source="t"
        )
        consent.revoke(session, user_id="u", purpose=Purpose.MARKETING_EMAIL)
        second, again = consent.grant(
            session, user_id="u", purpose=Purpose.MARKETING_EMAIL, source="t"
        )
    assert (new, again) == (True, True) and first.id != second.id
    assert [c.id for c in rows(db, "u")] == [second.id, first.id]
    assert len(revocations) == 1
    with db.transaction() as session, pytest.raises(NotFound) as exc:
        consent.revoke(session, user_id="u", purpose=Purpose.BIOMETRIC_PROCESSING)
    assert exc.value.reason == "consent_not_found"


# --- concurrency ---------------------------------------------------------------------------------


def test_concurrent_grants_leave_one_active_row(client: TestClient, alice, db: Database) -> None:
    start = threading.Barrier(8)

    def grant() -> int:
        start.wait()
        return client.put(BIOMETRIC, headers=alice).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        codes = sorted(pool.map(lambda _: grant(), range(8)))
    assert codes == [200] * 7 + [201]
    assert active_count(db, "alice") == 1


def test_a_grant_waiting_on_another_grant_returns_that_one(db: Database) -> None:
    purpose = Purpose.BIOMETRIC_PROCESSING
    with db.transaction() as session:
        mine, created = consent.grant(session, user_id="u", purpose=purpose, source="first")

        def other() -> tuple[Consent, bool]:
            with db.transaction() as s:
                return consent.grant(s, user_id="u", purpose=purpose, source="second")

        result = in_thread(other)
        wait_until_blocked(db)  # on the unique index, until this transaction ends
    theirs, theirs_created = result()
    assert (created, theirs_created, theirs.id, theirs.source) == (True, False, mine.id, "first")
    assert active_count(db, "u") == 1


def test_a_grant_waiting_on_a_revoke_grants_anew(db: Database, revocations) -> None:
    purpose = Purpose.BIOMETRIC_PROCESSING
    with db.transaction() as session:
        old, _ = consent.grant(session, user_id="u", purpose=purpose, source="t")
    with db.transaction() as session:
        consent.revoke(session, user_id="u", purpose=purpose)

        def regrant() -> tuple[Consent, bool]:
            with db.transaction() as s:
                return consent.grant(s, user_id="u", purpose=purpose, source="t")

        result = in_thread(regrant)
        wait_until_blocked(db)
    new, created = result()
    assert created and new.id != old.id
    assert active_count(db, "u") == 1 and len(revocations) == 1


def test_concurrent_revokes_revoke_and_publish_once(db: Database, revocations) -> None:
    purpose = Purpose.BIOMETRIC_PROCESSING
    with db.transaction() as session:
        consent.grant(session, user_id="u", purpose=purpose, source="t")
    with db.transaction() as session:
        consent.revoke(session, user_id="u", purpose=purpose)

        def revoke_too() -> Consent:
            with db.transaction() as s:
                return consent.revoke(s, user_id="u", purpose=purpose)

        result = in_thread(revoke_too)
        wait_until_blocked(db)  # on the row lock
    with pytest.raises(NotFound):
        result()
    assert len(revocations) == 1
    assert [c.revoked_at is not None for c in rows(db, "u")] == [True]


def test_a_locked_check_holds_off_a_revoke(db: Database, revocations) -> None:
    purpose = Purpose.BIOMETRIC_PROCESSING
    with db.transaction() as session:
        consent.grant(session, user_id="u", purpose=purpose, source="t")
    with db.transaction() as session:
        assert consent.has_active(session, user_id="u", purpose=purpose, lock=True)

        def revoke() -> Consent:
            with db.transaction() as s:
                return consent.revoke(s, user_id="u", purpose=purpose)

        result = in_thread(revoke)
        wait_until_blocked(db)  # the revoke (and its erasure) runs after this transaction
        assert revocations == []
    assert result().revoked_at is not None
    assert len(revocations) == 1

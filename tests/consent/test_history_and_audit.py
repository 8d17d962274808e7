"""The record of consent: a user's history per purpose, and the operators' audit export of a
period (API and CLI)."""

from __future__ import annotations

import csv
import io
import subprocess
import sys
from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient
from sqlalchemy import text

from mediaplane.runtime import Runtime
from mediaplane.settings import Settings
from tests.jobs.helpers import worker_env
from tests.media_api.helpers import bearer

BIOMETRIC = "/v1/me/consents/biometric_processing"
T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def backdate(runtime: Runtime, user_id: str, granted: datetime, revoked: datetime | None) -> None:
    """The newest consent row of the user, as if given (and revoked) then."""
    with runtime.database.transaction() as session:
        session.execute(
            text(
                "UPDATE consents SET granted_at = :g, revoked_at = CASE WHEN revoked_at IS NULL"
                " THEN NULL ELSE CAST(:r AS timestamptz) END WHERE id = (SELECT id FROM consents"
                " WHERE user_id = :u ORDER BY granted_at DESC LIMIT 1)"
            ),
            {"g": granted, "r": revoked, "u": user_id},
        )


def test_the_history_of_a_consent_lists_every_grant_and_revocation(
    client: TestClient, runtime: Runtime, alice
) -> None:
    never = client.get(BIOMETRIC, headers=alice).json()
    assert never == {"purpose": "biometric_processing", "status": "never", "history": []}

    client.put(BIOMETRIC, headers=alice, json={"source": "ios-onboarding"})
    client.delete(BIOMETRIC, headers=alice)
    backdate(runtime, "alice", T0, T0 + timedelta(days=2))
    client.put(BIOMETRIC, headers=alice)

    shown = client.get(BIOMETRIC, headers=alice).json()

    assert shown["status"] == "active"
    assert [(e["event"], e["source"]) for e in shown["history"]] == [
        ("granted", "ios-onboarding"),
        ("revoked", "ios-onboarding"),
        ("granted", "api"),
    ]
    assert shown["history"][0]["at"] == "2026-03-01T09:00:00Z"
    assert shown["history"][1]["at"] == "2026-03-03T09:00:00Z"
    unknown = client.get("/v1/me/consents/telepathy", headers=alice)
    assert unknown.status_code == 404 and unknown.json()["code"] == "unknown_purpose"


def test_operators_export_the_consent_events_of_a_period(
    client: TestClient, runtime: Runtime, make_token, settings: Settings
) -> None:
    olga = bearer(make_token(aud="backoffice", roles=["operator"], sub="olga"))
    for user, granted, revoked in (
        ("alice", T0, T0 + timedelta(days=40)),  # granted in March, revoked in April
        ("bob", T0 + timedelta(days=10), None),
        ("carol", T0 - timedelta(days=30), None),  # before the period
    ):
        headers = bearer(make_token(aud="media", roles=["user"], sub=user))
        client.put(BIOMETRIC, headers=headers)
        if revoked:
            client.delete(BIOMETRIC, headers=headers)
        backdate(runtime, user, granted, revoked)
    march = {"from": "2026-03-01T00:00:00Z", "to": "2026-04-01T00:00:00Z"}

    resp = client.get("/v1/consents/events", params=march, headers=olga)

    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert (body["from"], body["to"]) == ("2026-03-01T00:00:00Z", "2026-04-01T00:00:00Z")
    assert [(e["userId"], e["event"], e["at"]) for e in body["items"]] == [
        ("alice", "granted", "2026-03-01T09:00:00Z"),
        ("bob", "granted", "2026-03-11T09:00:00Z"),
    ]
    april = {"from": "2026-04-01T00:00:00Z", "to": "2026-05-01T00:00:00Z"}
    items = client.get("/v1/consents/events", params=april, headers=olga).json()["items"]
    assert [(e["userId"], e["event"]) for e in items] == [("alice", "revoked")]
    backwards = {"from": march["to"], "to": march["from"]}
    resp = client.get("/v1/consents/events", params=backwards, headers=olga)
    assert resp.status_code == 400 and resp.json()["code"] == "invalid_period"
    naive = {"from": "2026-03-01T00:00:00", "to": "2026-04-01T00:00:00"}
    resp = client.get("/v1/consents/events", params=naive, headers=olga)
    assert resp.status_code == 400 and resp.json()["code"] == "naive_datetime"

    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mediaplane.cli",
            "consents",
            "export",
            "--from",
            "2026-03-01T00:00:00Z",
            "--to",
            "2026-04-01T00:00:00Z",
        ],
        env=worker_env(settings),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(io.StringIO(done.stdout)))
    assert [(r["user_id"], r["event"], r["at"]) for r in rows] == [
        ("alice", "granted", "2026-03-01T09:00:00+00:00"),
        ("bob", "granted", "2026-03-11T09:00:00+00:00"),
    ]

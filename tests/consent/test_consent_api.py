"""/v1/me/consents as a client sees it: grant, re-grant, revoke, history, who may call."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from mediaplane.consent import Consent
from mediaplane.runtime import Runtime
from tests.media_api.helpers import bearer

CONSENTS = "/v1/me/consents"
BIOMETRIC = f"{CONSENTS}/biometric_processing"


def active_rows(runtime: Runtime, user_id: str) -> int:
    with runtime.database.transaction() as session:
        return session.scalar(
            select(func.count())
            .select_from(Consent)
            .where(Consent.user_id == user_id, Consent.revoked_at.is_(None))
        )


def history(client: TestClient, headers: dict[str, str]) -> list[tuple[str, str]]:
    items = client.get(CONSENTS, headers=headers).json()["items"]
    return [(item["purpose"], item["status"]) for item in items]


def test_grant_is_201_and_listed_active(client: TestClient, alice) -> None:
    resp = client.put(BIOMETRIC, headers=alice)
    assert resp.status_code == 201, resp.text
    body = resp.json()
    assert body == {
        "purpose": "biometric_processing",
        "status": "active",
        "grantedAt": body["grantedAt"],
        "revokedAt": None,
        "source": "api",
    }
    assert body["grantedAt"].endswith("Z")
    listed = client.get(CONSENTS, headers=alice)
    assert listed.status_code == 200
    assert listed.json() == {"items": [body]}


def test_granting_again_is_200_and_changes_nothing(client: TestClient, alice, runtime) -> None:
    first = client.put(BIOMETRIC, headers=alice, json={"source": "ios-onboarding"})
    again = client.put(BIOMETRIC, headers=alice, json={"source": "web"})
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == first.json()
    assert again.json()["source"] == "ios-onboarding"
    assert active_rows(runtime, "alice") == 1


def test_revoke_keeps_the_row_and_regrant_adds_one(client: TestClient, alice) -> None:
    granted = client.put(BIOMETRIC, headers=alice).json()
    revoked = client.delete(BIOMETRIC, headers=alice)
    assert revoked.status_code == 200, revoked.text
    assert revoked.json()["status"] == "revoked"
    assert revoked.json()["grantedAt"] == granted["grantedAt"]
    assert revoked.json()["revokedAt"] >= granted["grantedAt"]
    assert client.get(CONSENTS, headers=alice).json()["items"] == [revoked.json()]

    regranted = client.put(BIOMETRIC, headers=alice)
    assert regranted.status_code == 201
    assert history(client, alice) == [
        ("biometric_processing", "active"),
        ("biometric_processing", "revoked"),
    ]


def test_purposes_are_independent(client: TestClient, alice) -> None:
    client.put(BIOMETRIC, headers=alice)
    client.put(f"{CONSENTS}/marketing_email", headers=alice)
    client.delete(f"{CONSENTS}/marketing_email", headers=alice)
    assert sorted(history(client, alice)) == [
        ("biometric_processing", "active"),
        ("marketing_email", "revoked"),
    ]


def test_revoking_without_an_active_consent_is_404(client: TestClient, alice) -> None:
    never = client.delete(BIOMETRIC, headers=alice)
    assert never.status_code == 404
    assert never.headers["content-type"] == "application/problem+json"
    assert never.json()["code"] == "consent_not_found"
    client.put(BIOMETRIC, headers=alice)
    assert client.delete(BIOMETRIC, headers=alice).status_code == 200
    assert client.delete(BIOMETRIC, headers=alice).json()["code"] == "consent_not_found"


def test_unknown_purpose_is_404(client: TestClient, alice) -> None:
    for method in ("PUT", "DELETE"):
        resp = client.request(method, f"{CONSENTS}/selling_your_data", headers=alice)
        assert resp.status_code == 404
        assert resp.json()["code"] == "unknown_purpose"


def test_a_bad_body_is_422(client: TestClient, alice) -> None:
    for body in ({"source": ""}, {"source": "x" * 65}, {"source": 7}, {"via": "web"}):
        resp = client.put(BIOMETRIC, headers=alice, json=body)
        assert resp.status_code == 422, body
        assert resp.json()["code"] == "validation_failed"
    assert client.get(CONSENTS, headers=alice).json() == {"items": []}
    assert client.put(BIOMETRIC, headers=alice, json={"source": "x" * 64}).status_code == 201


def test_only_media_users_may_call(client: TestClient, make_token) -> None:
    missing = client.get(CONSENTS)
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == "Bearer"
    # Authentication comes first: an unknown purpose tells an anonymous caller nothing.
    assert client.put(f"{CONSENTS}/nope").status_code == 401

    backoffice = bearer(make_token(aud="backoffice", roles=["user"]))
    assert client.get(CONSENTS, headers=backoffice).status_code == 403
    photographer = bearer(make_token(aud="media", roles=["photographer"]))
    denied = client.put(BIOMETRIC, headers=photographer)
    assert denied.status_code == 403
    assert denied.json()["code"] == "insufficient_role"


def test_users_never_see_or_revoke_each_others_consents(client: TestClient, alice, bob) -> None:
    client.put(BIOMETRIC, headers=alice)
    assert client.get(CONSENTS, headers=bob).json() == {"items": []}
    assert client.delete(BIOMETRIC, headers=bob).status_code == 404
    assert history(client, alice) == [("biometric_processing", "active")]

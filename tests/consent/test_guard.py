"""require_consent on a tiny route on the real app: 403 until granted, and again once revoked."""

from __future__ import annotations

import pytest
from fastapi import APIRouter, Depends, FastAPI
from fastapi.testclient import TestClient

from mediaplane.auth import AUDIENCE_MEDIA, Principal, require_principal
from mediaplane.consent import Purpose, require_consent
from mediaplane.web import ProblemRoute
from tests.media_api.helpers import bearer

media_user = require_principal(AUDIENCE_MEDIA, roles=["user"])
guarded = APIRouter(route_class=ProblemRoute)


@guarded.post("/test/biometric")
def biometric(
    principal: Principal = Depends(
        require_consent(Purpose.BIOMETRIC_PROCESSING, principal=media_user)
    ),
) -> dict[str, str]:
    return {"sub": principal.subject}


@guarded.post("/test/marketing")
def marketing(
    principal: Principal = Depends(require_consent("marketing_email", principal=media_user)),
) -> dict[str, str]:
    return {"sub": principal.subject}


@pytest.fixture
def app(app: FastAPI) -> FastAPI:
    app.include_router(guarded)
    return app


def test_the_guard_follows_the_consent(client: TestClient, alice) -> None:
    refused = client.post("/test/biometric", headers=alice)
    assert refused.status_code == 403
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["code"] == "consent_required"
    assert "biometric_processing" in refused.json()["detail"]

    assert client.put("/v1/me/consents/biometric_processing", headers=alice).status_code == 201
    allowed = client.post("/test/biometric", headers=alice)
    assert allowed.status_code == 200
    assert allowed.json() == {"sub": "alice"}

    assert client.delete("/v1/me/consents/biometric_processing", headers=alice).status_code == 200
    assert client.post("/test/biometric", headers=alice).json()["code"] == "consent_required"


def test_consent_to_another_purpose_or_user_does_not_count(
    client: TestClient, alice, make_token
) -> None:
    assert client.put("/v1/me/consents/marketing_email", headers=alice).status_code == 201
    assert client.post("/test/marketing", headers=alice).status_code == 200
    assert client.post("/test/biometric", headers=alice).status_code == 403
    bob = bearer(make_token(aud="media", roles=["user"], sub="bob"))
    assert client.post("/test/marketing", headers=bob).status_code == 403


def test_authentication_comes_before_consent(client: TestClient, make_token) -> None:
    missing = client.post("/test/biometric")
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == "Bearer"
    operator = bearer(make_token(aud="backoffice", roles=["operator"]))
    # A valid token for another API is refused for what it is, before any consent lookup.
    wrong = client.post("/test/biometric", headers=operator)
    assert wrong.status_code == 403
    assert wrong.json()["code"] == "wrong_audience"


def test_an_unknown_purpose_fails_when_the_route_is_declared() -> None:
    with pytest.raises(ValueError, match="unknown consent purpose 'selfie_marketing'"):
        require_consent("selfie_marketing", principal=media_user)

"""require_principal on a tiny app: the header, the audience and the role, as a client sees them."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import APIRouter, Depends, FastAPI
from fastapi.testclient import TestClient

from mediaplane.auth import (
    AUDIENCE_BACKOFFICE,
    AUDIENCE_MEDIA,
    Principal,
    build_verifier,
    mint_dev_token,
    require_principal,
)
from mediaplane.web import ProblemRoute
from tests.auth.factories import claims, make_settings, rsa_key, verifier_for

router = APIRouter(route_class=ProblemRoute)


@router.get("/me")
def me(principal: Principal = Depends(require_principal(AUDIENCE_MEDIA))) -> dict[str, str]:
    return {"sub": principal.subject, "aud": principal.audience}


@router.get("/operators")
def operators(
    principal: Principal = Depends(require_principal(AUDIENCE_BACKOFFICE, roles=["operator"])),
) -> dict[str, str]:
    return {"sub": principal.subject}


def make_app() -> FastAPI:
    app = FastAPI()
    app.include_router(router)
    app.state.verifier = verifier_for(rsa_key())
    return app


@pytest.fixture
def client() -> Iterator[TestClient]:
    with TestClient(make_app()) as c:
        yield c


def bearer(token: str, scheme: str = "Bearer") -> dict[str, str]:
    return {"Authorization": f"{scheme} {token}"}


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Basic dTpw"}, {"Authorization": "Bearer "}, {"Authorization": "x"}],
    ids=["none", "basic", "empty-bearer", "no-scheme"],
)
def test_no_bearer_token_is_401_missing_token(client: TestClient, headers: dict[str, str]) -> None:
    response = client.get("/me", headers=headers)

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.json()["code"] == "missing_token"


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER"])
def test_right_audience_is_200_whatever_the_scheme_case(client: TestClient, scheme: str) -> None:
    payload = claims(aud=AUDIENCE_MEDIA)

    response = client.get("/me", headers=bearer(rsa_key().sign(payload), scheme))

    assert response.status_code == 200
    assert response.json() == {"sub": payload["sub"], "aud": AUDIENCE_MEDIA}


def test_right_audience_and_role_is_200(client: TestClient) -> None:
    token = rsa_key().sign(claims(aud=AUDIENCE_BACKOFFICE, roles=["viewer", "operator"]))

    assert client.get("/operators", headers=bearer(token)).status_code == 200


def test_missing_role_is_403_insufficient_role(client: TestClient) -> None:
    token = rsa_key().sign(claims(aud=AUDIENCE_BACKOFFICE, role="user"))

    response = client.get("/operators", headers=bearer(token))

    assert response.status_code == 403
    assert response.json()["code"] == "insufficient_role"
    assert "WWW-Authenticate" not in response.headers


def test_wrong_audience_is_403_wrong_audience(client: TestClient) -> None:
    token = rsa_key().sign(claims(aud=AUDIENCE_MEDIA, role="operator"))

    response = client.get("/operators", headers=bearer(token))

    assert response.status_code == 403
    assert response.json()["code"] == "wrong_audience"


def test_expired_token_is_401_token_expired(client: TestClient) -> None:
    token = rsa_key().sign(claims(exp=int(time.time()) - 3600))

    response = client.get("/me", headers=bearer(token))

    assert response.status_code == 401
    assert response.json()["code"] == "token_expired"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_dev_token_from_the_cli_path_is_accepted(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    app = make_app()
    app.state.verifier = build_verifier(settings)
    token = mint_dev_token(settings, subject="u1", audience=AUDIENCE_MEDIA, roles=["user"])

    with TestClient(app) as c:
        assert c.get("/me", headers=bearer(token)).json() == {"sub": "u1", "aud": AUDIENCE_MEDIA}


def test_openapi_documents_the_bearer_scheme() -> None:
    schemes = make_app().openapi()["components"]["securitySchemes"]

    assert schemes["HTTPBearer"]["scheme"] == "bearer"


def test_misdeclared_guards_fail_at_import_time() -> None:
    with pytest.raises(ValueError):
        require_principal()
    with pytest.raises(TypeError):
        require_principal(AUDIENCE_MEDIA, roles="operator")

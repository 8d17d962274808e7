"""Point 6 of issue 9: the console's dev sign-in answers loopback `Host` headers only.

A page on evil.example that rebinds its name to 127.0.0.1 reaches a developer's server from
their browser, but its requests still say `Host: evil.example`.
"""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from mediaplane.console.routes import is_loopback_host

LOOPBACK = ["localhost", "localhost:3003", "127.0.0.1", "127.0.0.1:8080", "[::1]", "[::1]:3003"]
FOREIGN = [
    "evil.example",
    "evil.example:3003",
    "localhost.evil.example",
    "127.0.0.1.nip.io",
    "127.0.0.2",
    "0.0.0.0:3003",
    "[::2]:3003",
    "localhost:3003@evil.example",
    "",
]


@pytest.mark.parametrize("host", LOOPBACK)
def test_loopback_hosts_get_a_dev_token(app: FastAPI, host: str) -> None:
    with TestClient(app, base_url="http://localhost") as client:
        config = client.get("/console/config", headers={"Host": host}).json()
        assert config["devSignIn"] is True
        resp = client.post("/console/dev-token", json={"role": "operator"}, headers={"Host": host})
    assert resp.status_code == 200, resp.text
    assert resp.json()["audience"] == "backoffice"


@pytest.mark.parametrize("host", FOREIGN[:3])
def test_other_hosts_are_refused_with_a_reason(app: FastAPI, host: str) -> None:
    with TestClient(app, base_url="http://localhost") as client:
        config = client.get("/console/config", headers={"Host": host}).json()
        assert config["devSignIn"] is False
        resp = client.post("/console/dev-token", json={"role": "operator"}, headers={"Host": host})
    assert resp.status_code == 403
    assert resp.headers["content-type"] == "application/problem+json"
    body = resp.json()
    assert body["code"] == "dev_sign_in_loopback_only"
    assert "token" not in body


@pytest.mark.parametrize("host", FOREIGN)
def test_only_loopback_names_count(host: str) -> None:
    assert not is_loopback_host(host)


@pytest.mark.parametrize("host", LOOPBACK)
def test_loopback_names_count(host: str) -> None:
    assert is_loopback_host(host) and is_loopback_host(host.upper())

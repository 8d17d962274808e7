"""An S3 endpoint that cannot be reached: calls that need the store answer 503 with
`Retry-After` and `storage_unavailable`, not 500."""

from __future__ import annotations

import socket
import uuid

import pytest
from fastapi.testclient import TestClient

from tests.conftest import TokenFactory
from tests.media_api.helpers import bearer


def closed_port() -> int:
    with socket.socket() as probe:  # bound then closed: nothing listens there
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    return {
        "storage_url": "s3://unreachable",
        "s3_endpoint_url": f"http://127.0.0.1:{closed_port()}",
        "s3_access_key_id": "key",
        "s3_secret_access_key": "secret",
        "s3_path_style": True,
    }


def test_unreachable_store_answers_503_with_retry_after(
    client: TestClient, make_token: TokenFactory
) -> None:
    headers = bearer(make_token(aud="media", roles=["photographer"]))
    # Presigning is local: the upload URL is still handed out.
    created = client.post(
        "/v1/photos/upload-url", json={"projectId": str(uuid.uuid4())}, headers=headers
    )
    assert created.status_code == 201
    # `complete` asks the store whether the bytes arrived: it cannot tell, so retry later.
    response = client.post(f"/v1/photos/{created.json()['photoId']}/complete", headers=headers)
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert int(response.headers["retry-after"]) > 0
    assert response.json()["code"] == "storage_unavailable"
    assert client.get("/readyz").json()["checks"]["storage"].startswith("error")

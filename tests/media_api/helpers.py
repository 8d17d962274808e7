"""Helpers for Media API tests: auth headers, PUTs to presigned URLs as a browser would."""

from __future__ import annotations

import httpx
from fastapi.testclient import TestClient

from tests.conftest import BASE_URL


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def put_to_presigned(
    client: TestClient, url: str, data: bytes, content_type: str = "image/jpeg"
) -> httpx.Response:
    """PUT with plain httpx: to the S3 server directly, or to the app's own storage route."""
    headers = {"Content-Type": content_type}
    if url.startswith(BASE_URL):
        return client.put(url, content=data, headers=headers)
    return httpx.put(url, content=data, headers=headers, timeout=30)


def get_presigned(client: TestClient, url: str) -> httpx.Response:
    if url.startswith(BASE_URL):
        return client.get(url)
    return httpx.get(url, timeout=30)

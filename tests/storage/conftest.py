"""Storage test fixtures: `object_store` runs a test on every backend.

The SeaweedFS fixtures (`s3_server`, `s3_bucket`) come from `tests.fixtures.s3`, registered by
the root conftest as a plugin; it is not imported again here, which would start a second server.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from starlette.requests import ClientDisconnect

from mediaplane.http.disconnects import client_disconnected
from mediaplane.storage import LocalObjectStore, ObjectStore, S3ObjectStore, storage_router

LOCAL_PUBLIC_URL = "http://testserver"
LOCAL_MAX_PUT_BYTES = 1024 * 1024


def local_store(root: Path) -> LocalObjectStore:
    return LocalObjectStore(
        root,
        LOCAL_PUBLIC_URL,
        secret=b"test-storage-signing-secret",
        max_put_bytes=LOCAL_MAX_PUT_BYTES,
    )


def storage_app(store: LocalObjectStore) -> FastAPI:
    """The smallest app serving local presigned URLs: the storage router and its store."""
    app = FastAPI()
    app.include_router(storage_router)
    # As the service does: a client gone mid-upload is logged, not raised.
    app.add_exception_handler(ClientDisconnect, client_disconnected)
    app.state.store = store
    return app


@pytest.fixture(params=["local", "s3"])
def object_store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    """Each backend in turn: local disk under tmp_path, then a fresh SeaweedFS bucket."""
    if request.param == "local":
        return local_store(tmp_path / "objects")
    server = request.getfixturevalue("s3_server")
    return S3ObjectStore(
        request.getfixturevalue("s3_bucket"),
        endpoint_url=server.endpoint_url,
        region=server.region,
        access_key_id=server.access_key_id,
        secret_access_key=server.secret_access_key,
        path_style=True,
    )


@pytest.fixture
def http(object_store: ObjectStore) -> Iterator[httpx.Client]:
    """An HTTP client that reaches the store's presigned URLs: the S3 server over the network,
    or the storage routes of an in-process app for the local store."""
    client: httpx.Client
    if isinstance(object_store, LocalObjectStore):
        client = TestClient(storage_app(object_store), base_url=LOCAL_PUBLIC_URL)
    else:
        client = httpx.Client(timeout=30)
    with client:
        yield client


@pytest.fixture
def local(tmp_path: Path) -> LocalObjectStore:
    """A local store for the tests of the local-only HTTP behaviour."""
    return local_store(tmp_path / "objects")

"""The database goes away for a moment and comes back, with the in-process worker running.

While it is down, API calls answer 503 with `Retry-After` in each API's error shape, and
/readyz says not ready; once it is back, the worker comes back by itself, uploads made during
and after the outage are processed, and /metrics counts the restart. Nothing is restarted by
hand.
"""

from __future__ import annotations

import socket
import threading
import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy.exc
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from mediaplane.app import create_app
from mediaplane.db import Database, engine
from mediaplane.faults import outage_of
from mediaplane.runtime import Runtime
from tests.conftest import BASE_URL, TokenFactory
from tests.faults.conftest import StoppablePostgres
from tests.imaging import factories
from tests.jobs.helpers import wait_until
from tests.media_api.helpers import bearer, put_to_presigned

pytestmark = pytest.mark.slow


@pytest.fixture
def database_url(postgres: StoppablePostgres) -> str:
    """The app, its worker and `mediaplane worker` processes use the stoppable server."""
    return postgres.url


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    return {
        # Quick heartbeats and restarts: the outage and the recovery take seconds, not minutes.
        "worker_heartbeat_seconds": 0.5,
        "worker_stalled_seconds": 5,
        "worker_restart_initial_seconds": 0.2,
        "worker_restart_max_seconds": 1,
        # The sweeper settles uploads whose storage notice was lost in the outage.
        "upload_sweep_interval_seconds": 1,
    }


@pytest.fixture
def serving(runtime: Runtime) -> Iterator[TestClient]:
    """The service as `mediaplane serve` runs it by default: with its in-process worker."""
    app = create_app(
        runtime.settings, database=runtime.database, store=runtime.store, run_worker=True
    )
    with TestClient(app, base_url=BASE_URL, raise_server_exceptions=False) as client:
        yield client


def ready(client: TestClient, probes: list[dict] | None = None) -> bool:
    response = client.get("/readyz")
    if probes is not None:
        probes.append(response.json())
    return response.status_code == 200


def metric(client: TestClient, name: str) -> float | None:
    response = client.get("/metrics")
    assert response.status_code == 200
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if sample.name == name:
                return sample.value
    return None


def processed(client: TestClient, token: str, photo_id: str) -> bool:
    response = client.get(f"/v1/photos/{photo_id}", headers=bearer(token))
    if response.status_code != 200:
        return False
    steps = response.json()["steps"]
    return bool(steps) and {step["status"] for step in steps.values()} == {"done"}


def upload_url(client: TestClient, token: str) -> dict:
    response = client.post(
        "/v1/photos/upload-url", json={"projectId": str(uuid.uuid4())}, headers=bearer(token)
    )
    assert response.status_code == 201, response.text
    return response.json()


def assert_database_unavailable_problem(response) -> None:  # type: ignore[no-untyped-def]
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert int(response.headers["retry-after"]) > 0
    assert response.json()["code"] == "database_unavailable"


def test_service_recovers_from_a_database_outage_by_itself(
    serving: TestClient, postgres: StoppablePostgres, make_token: TokenFactory
) -> None:
    client = serving
    token = make_token(aud="media", roles=["photographer"])
    wait_until(lambda: ready(client), timeout=30)
    assert client.get("/readyz").json()["checks"]["worker"] == "ok"

    before = upload_url(client, token)
    assert put_to_presigned(client, before["uploadUrl"], factories.jpeg_bytes(640, 480)).is_success
    wait_until(lambda: processed(client, token, before["photoId"]), timeout=30)
    during = upload_url(client, token)  # its bytes arrive while the database is down

    postgres.stop()
    try:
        # Media API: problem+json 503 with Retry-After, for reads and writes alike.
        assert_database_unavailable_problem(
            client.post(
                "/v1/photos/upload-url",
                json={"projectId": str(uuid.uuid4())},
                headers=bearer(token),
            )
        )
        assert_database_unavailable_problem(
            client.get(f"/v1/photos/{before['photoId']}", headers=bearer(token))
        )
        # Images server: Authgear's shape.
        images = client.post(
            "/api/images/upload", headers=bearer(make_token(aud="media", roles=["user"]))
        )
        assert images.status_code == 503, images.text
        assert int(images.headers["retry-after"]) > 0
        assert images.json()["error"]["reason"] == "DatabaseUnavailable"
        assert images.json()["error"]["code"] == 503

        # Local disk asks the uploads table whether the key still takes a write (a settled
        # upload must not be rewritten): with no database to ask, the PUT is refused with a
        # Retry-After, never half-stored, and the client sends it again once the database is back.
        refused = put_to_presigned(client, during["uploadUrl"], factories.jpeg_bytes(800, 600))
        assert_database_unavailable_problem(refused)

        probe = client.get("/readyz")
        assert probe.status_code == 503
        assert probe.json()["checks"]["database"] != "ok"
        # The worker notices: it is not reported alive while it cannot reach its queue.
        wait_until(lambda: client.get("/readyz").json()["checks"]["worker"] != "ok", timeout=30)
        assert metric(client, "mediaplane_worker_up") == 0
    finally:
        postgres.start()

    probes: list[dict] = []
    wait_until(lambda: ready(client, probes), timeout=30)
    readiness = probes[-1]
    assert readiness["checks"] == {"database": "ok", "storage": "ok", "worker": "ok"}
    assert readiness["worker"]["state"] == "running"
    assert readiness["worker"]["restarts"] >= 1
    assert readiness["worker"]["lastHeartbeat"] is not None

    again = put_to_presigned(client, during["uploadUrl"], factories.jpeg_bytes(800, 600))
    assert again.status_code == 200, again.text
    wait_until(lambda: processed(client, token, during["photoId"]), timeout=30)
    after = upload_url(client, token)
    assert put_to_presigned(client, after["uploadUrl"], factories.jpeg_bytes(700, 500)).is_success
    wait_until(lambda: processed(client, token, after["photoId"]), timeout=30)

    assert metric(client, "mediaplane_worker_up") == 1
    restarts = metric(client, "mediaplane_worker_restarts_total")
    assert restarts is not None and restarts >= 1


def test_readyz_without_an_in_process_worker_reports_it_disabled(client: TestClient) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["checks"]["worker"] == "disabled"
    assert metric(client, "mediaplane_worker_up") is None


def test_a_silent_database_server_fails_fast_instead_of_holding_the_request(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A server that takes the TCP connection and never answers (a stuck host, a half-open
    firewall): without a connect timeout libpq would wait forever, and every request thread
    with it."""
    monkeypatch.setattr(engine, "CONNECT_TIMEOUT_SECONDS", 1)
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)  # the kernel completes handshakes; nobody ever speaks
        port = silent.getsockname()[1]
        database = Database(f"postgresql://mediaplane@127.0.0.1:{port}/mediaplane")
        errors: list[Exception] = []

        def check() -> None:
            try:
                database.check()
            except Exception as exc:
                errors.append(exc)

        # In a daemon thread: without the timeout the check would never return.
        attempt = threading.Thread(target=check, daemon=True)
        attempt.start()
        attempt.join(timeout=10)
        assert not attempt.is_alive(), "the connection attempt is still waiting"
    (error,) = errors
    assert isinstance(error, sqlalchemy.exc.OperationalError)
    assert outage_of(error) is not None

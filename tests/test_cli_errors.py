"""What a newcomer sees when the setup is wrong: the real `mediaplane` command in a subprocess.

One plain line per problem naming the environment variable, exit code 2, no traceback unless
LOG_LEVEL=debug; and a second `serve` on a taken port says so before starting anything.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

MEDIAPLANE = str(Path(sys.executable).with_name("mediaplane"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def clean_env(tmp_path: Path) -> dict[str, str]:
    """A shell with no Mediaplane settings, in an empty folder (no stray `.env`)."""
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "NO_PROXY")
    env = {name: os.environ[name] for name in keep if name in os.environ}
    env.update(MEDIAPLANE_DATA_DIR=str(tmp_path / "data"), COLUMNS="200")
    return env


def mediaplane(
    *args: str, env: dict[str, str], cwd: Path, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [MEDIAPLANE, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


def test_wrong_settings_are_one_line_each_naming_the_variable(
    clean_env: dict[str, str], tmp_path: Path
) -> None:
    env = {
        **clean_env,
        "STORAGE_URL": "ftp://x",
        "MEDIAPLANE_PORT": "abc",
        "FACE_ENGINE": "dlib",
        "LOG_JSON": "maybe",
        "MAX_IMAGE_PIXELS": "0",
        "S3_SECRET_ACCESS_KEY": "top-secret",
        "JWT_HS256_SECRET": "s",
        "JWT_PUBLIC_KEY": "pem",
    }
    result = mediaplane("serve", env=env, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        "mediaplane: invalid setting STORAGE_URL='ftp://x': must be s3://BUCKET or file:///PATH",
        "mediaplane: invalid setting MEDIAPLANE_PORT='abc': expected a whole number",
        "mediaplane: invalid setting MAX_IMAGE_PIXELS='0': expected greater than 0",
        "mediaplane: invalid setting FACE_ENGINE='dlib': expected 'local', 'rekognition' or 'off'",
        "mediaplane: invalid setting LOG_JSON='maybe': "
        "expected true or false (also 1/0, yes/no, on/off)",
        "mediaplane: every setting is described in docs/configuration.md",
    ]
    # Nothing of the server started.
    assert not (tmp_path / "data" / "postgres").exists()


def test_rules_across_settings_and_secrets_are_never_echoed(
    clean_env: dict[str, str], tmp_path: Path
) -> None:
    env = {**clean_env, "JWT_HS256_SECRET": "hs-secret-value", "JWT_PUBLIC_KEY": "pem-value"}
    result = mediaplane("jobs", env=env, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.splitlines()[0] == (
        "mediaplane: invalid settings: set only one of JWT_JWKS_URL, JWT_PUBLIC_KEY, "
        "JWT_HS256_SECRET (one key source avoids algorithm confusion)"
    )
    env = {**clean_env, "IMAGES_UPLOAD_RATE_LIMIT": "x", "DATABASE_URL": "mysql://u:pw99@db/x"}
    result = mediaplane("migrate", env=env, cwd=tmp_path)
    assert result.returncode == 2
    assert "pw99" not in result.stderr
    assert "invalid setting DATABASE_URL='mysql://u:***@db/x': must be a postgresql:// URL" in (
        result.stderr
    )


def test_a_traceback_only_with_log_level_debug(clean_env: dict[str, str], tmp_path: Path) -> None:
    quiet = mediaplane("migrate", env={**clean_env, "STORAGE_URL": "ftp://x"}, cwd=tmp_path)
    assert "Traceback" not in quiet.stderr and "pydantic" not in quiet.stderr
    debug = {**clean_env, "STORAGE_URL": "ftp://x", "LOG_LEVEL": "DEBUG"}
    loud = mediaplane("migrate", env=debug, cwd=tmp_path)
    assert loud.returncode == 2
    assert "Traceback" in loud.stderr and "ValidationError" in loud.stderr
    assert loud.stderr.rstrip().endswith("every setting is described in docs/configuration.md")


def test_an_unreachable_database_is_one_message_without_the_password(
    clean_env: dict[str, str], tmp_path: Path
) -> None:
    port = free_port()  # nothing listens there
    env = {**clean_env, "DATABASE_URL": f"postgresql://mp:hunter2@127.0.0.1:{port}/mediaplane"}
    result = mediaplane("migrate", env=env, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.splitlines()[0] == (
        f"mediaplane: cannot connect to PostgreSQL at 127.0.0.1:{port} (DATABASE_URL): "
        "Connection refused"
    )
    assert "hunter2" not in result.stderr
    assert "Traceback" not in result.stderr and "sqlalche" not in result.stderr


@pytest.fixture
def serving(
    clean_env: dict[str, str], tmp_path: Path, database_url: str
) -> Iterator[tuple[int, Path]]:
    """`mediaplane serve --no-worker` on a free port, on the test database; yields the port and
    the file its stderr goes to."""
    port = free_port()
    log = tmp_path / "serve.log"
    env = {**clean_env, "DATABASE_URL": database_url, "MEDIAPLANE_PORT": str(port)}
    env.update(FACE_ENGINE="off", UPLOAD_SWEEP_INTERVAL_SECONDS="0")
    with log.open("w") as out:
        process = subprocess.Popen(
            [MEDIAPLANE, "serve", "--no-worker"], env=env, cwd=tmp_path, stderr=out, stdout=out
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, log.read_text()
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        yield port, log
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)


def test_the_server_logs_one_json_access_line_per_request(serving: tuple[int, Path]) -> None:
    port, log = serving
    response = httpx.get(
        f"http://127.0.0.1:{port}/_storage/photos/p/x.jpg?X-Mp-Signature=abcdef0123&X-Mp-Expires=1",
        headers={"X-Request-Id": "curl-1"},
    )
    assert response.status_code == 403
    assert response.json()["requestId"] == "curl-1" == response.headers["X-Request-Id"]
    time.sleep(0.2)  # the line is written after the response went out
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    served = [line for line in lines if line.get("logger") == "mediaplane.access"]
    assert [(line["method"], line["path"], line["status"]) for line in served][-1] == (
        "GET",
        "/_storage/photos/p/x.jpg",
        403,
    )
    assert served[-1]["request_id"] == "curl-1"
    assert "abcdef0123" not in log.read_text()
    assert not [line for line in lines if line.get("logger") == "uvicorn.access"]
    # The one URL to open: PUBLIC_URL, by default the bind's address (loopback: localhost).
    assert any(line["event"].startswith(f"serving on http://localhost:{port}") for line in lines)


def test_a_second_serve_on_the_same_port_says_so_plainly(
    serving: tuple[int, Path], clean_env: dict[str, str], tmp_path: Path
) -> None:
    port, _ = serving
    # No DATABASE_URL: it would start an embedded PostgreSQL, but the port is checked first.
    second_data = tmp_path / "second"
    env = {**clean_env, "MEDIAPLANE_PORT": str(port), "MEDIAPLANE_DATA_DIR": str(second_data)}
    result = mediaplane("serve", env=env, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.splitlines()[0] == (
        f"mediaplane: another instance is already serving on http://127.0.0.1:{port}"
    )
    assert "Traceback" not in result.stderr and "address already in use" not in result.stderr
    assert not (second_data / "postgres").exists()


def test_an_embedded_data_dir_held_by_another_server_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mediaplane.db.embedded import EmbeddedPostgres
    from mediaplane.runtime import open_runtime
    from mediaplane.settings import Settings
    from mediaplane.startup import StartupError

    pgdata = tmp_path / "data" / "postgres"
    pgdata.mkdir(parents=True)
    (pgdata / "postmaster.pid").write_text("4242\n/elsewhere\n")

    def refused(self: EmbeddedPostgres) -> str:
        raise RuntimeError("could not lock data directory")

    monkeypatch.setattr(EmbeddedPostgres, "start", refused)
    settings = Settings(_env_file=None, data_dir=tmp_path / "data")  # type: ignore[call-arg]
    with pytest.raises(StartupError) as caught, open_runtime(settings):
        pass
    assert caught.value.lines == [
        f"cannot start the embedded PostgreSQL in {pgdata}: could not lock data directory",
        "the data directory is locked by a PostgreSQL server (pid 4242) of another instance: "
        "stop that instance, or set MEDIAPLANE_DATA_DIR to another directory",
        f"its log is {pgdata / 'log'}",
    ]

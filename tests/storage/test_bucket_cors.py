"""`mediaplane storage cors` against a real S3 server (SeaweedFS): shows, then applies, the
bucket CORS rules browser uploads need; and the bucket then answers a browser's preflight."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.fixtures.s3 import S3ServerInfo

ORIGIN = "https://backoffice.example.com"


def storage_cors(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "mediaplane.cli", "storage", "cors", *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)


@pytest.fixture
def env(s3_server: S3ServerInfo, s3_bucket: str, tmp_path: Path) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("S3_", "STORAGE_"))}
    return {
        **base,
        "MEDIAPLANE_DATA_DIR": str(tmp_path),
        "STORAGE_URL": f"s3://{s3_bucket}",
        "S3_ENDPOINT_URL": s3_server.endpoint_url,
        "S3_REGION": s3_server.region,
        "S3_ACCESS_KEY_ID": s3_server.access_key_id,
        "S3_SECRET_ACCESS_KEY": s3_server.secret_access_key,
        "S3_PATH_STYLE": "true",
        "CORS_ALLOWED_ORIGINS": ORIGIN,
    }


def test_show_then_apply_then_the_bucket_answers_preflights(
    env: dict[str, str], s3_server: S3ServerInfo, s3_bucket: str
) -> None:
    before = storage_cors(env)
    assert before.returncode == 1, before.stderr  # rules missing: says so, exits 1
    assert json.loads(before.stdout)["rules"] == []

    applied = storage_cors(env, "--apply")
    assert applied.returncode == 0, applied.stderr
    [rule] = json.loads(applied.stdout)["rules"]
    assert rule["AllowedOrigins"] == [ORIGIN]
    assert set(rule["AllowedMethods"]) == {"GET", "HEAD", "PUT"}
    assert storage_cors(env).returncode == 0

    preflight = httpx.options(
        f"{s3_server.endpoint_url}/{s3_bucket}/photos/p/x/original.jpg",
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "PUT",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert preflight.status_code in (200, 204), preflight.text
    assert preflight.headers["access-control-allow-origin"] == ORIGIN


def test_local_disk_has_no_bucket_to_set(tmp_path: Path) -> None:
    env = {**os.environ, "MEDIAPLANE_DATA_DIR": str(tmp_path)}
    env.pop("STORAGE_URL", None)

    result = storage_cors(env)

    assert result.returncode == 2
    assert "local disk" in result.stderr

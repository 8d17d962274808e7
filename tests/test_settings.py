"""Settings: every knob documented, wrong values fail fast naming the variable."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from mediaplane.settings import Settings
from mediaplane.startup import env_name, settings_problems, shown_value

DOC = Path(__file__).parents[1] / "docs" / "configuration.md"


def env_names(name: str) -> list[str]:
    field = Settings.model_fields[name]
    alias = field.validation_alias
    choices = getattr(alias, "choices", None)
    if choices:
        return [str(choices[0])]
    return [name.upper()]


@pytest.mark.parametrize("name", sorted(Settings.model_fields))
def test_every_setting_is_documented(name: str) -> None:
    text = DOC.read_text()
    for env in env_names(name):
        assert f"`{env}`" in text, f"{env} is not in docs/configuration.md"


def test_wrong_values_fail_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "sqlite:///x.db")
    with pytest.raises(ValidationError, match="database_url"):
        Settings(_env_file=None)  # type: ignore[call-arg]
    monkeypatch.delenv("DATABASE_URL")
    monkeypatch.setenv("STORAGE_URL", "ftp://x")
    with pytest.raises(ValidationError, match="storage_url"):
        Settings(_env_file=None)  # type: ignore[call-arg]
    monkeypatch.delenv("STORAGE_URL")
    monkeypatch.setenv("JWT_HS256_SECRET", "s")
    monkeypatch.setenv("JWT_PUBLIC_KEY", "pem")
    with pytest.raises(ValidationError, match="only one of"):
        Settings(_env_file=None)  # type: ignore[call-arg]


def test_app_hosts_accepts_json_and_pairs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APP_HOSTS", '{"a.example.com": "a"}')
    assert Settings(_env_file=None).app_hosts == {"a.example.com": "a"}  # type: ignore[call-arg]
    monkeypatch.setenv("APP_HOSTS", "A.example.com=a, b.example.com=b")
    assert Settings(_env_file=None).app_hosts == {  # type: ignore[call-arg]
        "a.example.com": "a",
        "b.example.com": "b",
    }
    monkeypatch.setenv("MEDIAPLANE_DATA_DIR", "/srv/media")
    assert Settings(_env_file=None).data_dir == Path("/srv/media")  # type: ignore[call-arg]


def test_match_threshold_defaults_to_the_engines_scale(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FACE_ENGINE", "local")
    assert Settings(_env_file=None).match_threshold == 50  # type: ignore[call-arg]
    monkeypatch.setenv("FACE_ENGINE", "rekognition")
    assert Settings(_env_file=None).match_threshold == 80  # type: ignore[call-arg]
    monkeypatch.setenv("FACE_MATCH_THRESHOLD", "72.5")
    assert Settings(_env_file=None).match_threshold == 72.5  # type: ignore[call-arg]


def problems(monkeypatch: pytest.MonkeyPatch, **env: str) -> list[str]:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError) as caught:
        Settings(_env_file=None)  # type: ignore[call-arg]
    return settings_problems(caught.value)


def test_problems_name_the_environment_variable_and_what_it_accepts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert problems(monkeypatch, APP_HOSTS="a.example.com", MEDIAPLANE_DATA_DIR="/srv") == [
        "invalid setting APP_HOSTS='a.example.com': "
        'must be JSON {"host": "app_id"} or host=app_id,host2=app_id2'
    ]
    monkeypatch.delenv("APP_HOSTS")
    assert problems(monkeypatch, STORAGE_URL="s3://", JOB_MAX_ATTEMPTS="0") == [
        "invalid setting STORAGE_URL='s3://': s3:// needs a bucket name: s3://BUCKET",
        "invalid setting JOB_MAX_ATTEMPTS='0': expected greater than or equal to 1",
    ]


def test_problems_never_echo_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    lines = problems(
        monkeypatch,
        DATABASE_URL="mysql://app:pa55word@db/media",
        S3_PATH_STYLE="sure",
        FACE_MATCH_THRESHOLD="high",
    )
    assert lines == [
        "invalid setting DATABASE_URL='mysql://app:***@db/media': "
        "must be a postgresql:// URL (PostgreSQL only)",
        "invalid setting S3_PATH_STYLE='sure': expected true or false (also 1/0, yes/no, on/off)",
        "invalid setting FACE_MATCH_THRESHOLD='high': expected a number",
    ]
    assert env_name("port") == "MEDIAPLANE_PORT" and env_name("jwt_hs256_secret") == (
        "JWT_HS256_SECRET"
    )
    assert shown_value("JWT_HS256_SECRET", "s3cr3t") == ""
    assert shown_value("IMAGES_SIGNING_KEY", "k") == ""


def test_public_url_follows_the_port_and_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PUBLIC_URL", raising=False)
    monkeypatch.setenv("MEDIAPLANE_PORT", "3013")
    assert Settings(_env_file=None).public_url == "http://localhost:3013"  # type: ignore[call-arg]
    monkeypatch.setenv("MEDIAPLANE_HOST", "0.0.0.0")
    assert Settings(_env_file=None).public_url == "http://localhost:3013"  # type: ignore[call-arg]
    monkeypatch.setenv("MEDIAPLANE_HOST", "192.0.2.7")
    assert Settings(_env_file=None).public_url == "http://192.0.2.7:3013"  # type: ignore[call-arg]
    # `serve --host/--port` moves it too, unless PUBLIC_URL was set (a proxy in front).
    moved = Settings(_env_file=None).serving_on("127.0.0.1", 4000)  # type: ignore[call-arg]
    assert moved.public_url == "http://localhost:4000"
    monkeypatch.setenv("PUBLIC_URL", "https://media.example.com")
    kept = Settings(_env_file=None).serving_on("127.0.0.1", 4000)  # type: ignore[call-arg]
    assert kept.public_url == "https://media.example.com"

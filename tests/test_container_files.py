"""The container files keep their promises without a container engine: Dockerfile, compose.yaml,
.env.example and .dockerignore. `make container-test` proves them in real containers; these
cheap checks keep `make test` from letting them drift."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from mediaplane.faces import local as local_faces
from mediaplane.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_SERVICES = {"migrate", "api", "worker", "postgres", "minio", "minio-init"}


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined, comments dropped."""
    joined: list[str] = []
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        joined.append(current + line)
        current = ""
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in joined]


@pytest.fixture(scope="module")
def final_stage() -> list[tuple[str, str]]:
    """The instructions of the image's last stage (what `docker run` gets)."""
    parsed = instructions((ROOT / "Dockerfile").read_text())
    starts = [i for i, (name, _) in enumerate(parsed) if name == "FROM"]
    assert len(starts) >= 2, "multi-stage: a builder stage and a runtime stage"
    return parsed[starts[-1] :]


def last(stage: list[tuple[str, str]], name: str) -> str:
    values = [args for instruction, args in stage if instruction == name]
    assert values, f"the final stage has no {name}"
    return values[-1]


def test_the_image_runs_as_a_non_root_user(final_stage: list[tuple[str, str]]) -> None:
    user = last(final_stage, "USER").split(":")[0]
    assert user not in ("root", "0")
    assert user.isdigit(), "numeric, so orchestrators can verify runAsNonRoot"


def test_the_image_serves_on_8003_with_a_health_check_and_one_data_volume(
    final_stage: list[tuple[str, str]],
) -> None:
    assert "8003" in last(final_stage, "EXPOSE").split()
    health = last(final_stage, "HEALTHCHECK")
    assert "/healthz" in health and "MEDIAPLANE_PORT" in health
    assert last(final_stage, "VOLUME") in ('["/data"]', "/data")
    env = " ".join(args for name, args in final_stage if name == "ENV")
    for setting in ("MEDIAPLANE_DATA_DIR=/data", "MEDIAPLANE_HOST=0.0.0.0", "MEDIAPLANE_PORT=8003"):
        assert setting in env
    # tini as PID 1 forwards SIGTERM and reaps the embedded PostgreSQL's daemonized server.
    assert last(final_stage, "ENTRYPOINT") == '["/usr/bin/tini", "--", "mediaplane"]'
    assert last(final_stage, "CMD") == '["serve"]'


def test_the_base_image_is_the_one_the_scripts_make_when_no_registry_answers() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert "ARG DEBIAN_IMAGE=debian:bookworm-slim" in text
    assert (
        "docker.io/library/debian:bookworm-slim" in (ROOT / "scripts/container-base.sh").read_text()
    )


def test_the_image_keeps_the_face_models_the_local_engine_loads() -> None:
    """The Dockerfile deletes unused model files: the ones faces/local.py loads must stay."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    source = Path(local_faces.__file__).read_text()
    loaded = set(re.findall(r'"([a-z0-9_]+\.dat)"', source))
    assert loaded, "faces/local.py names its model files"
    removed = {
        model
        for line in dockerfile.splitlines()
        if "rm -f" in line
        for model in re.findall(r"\$models/([\w.]+)", line)
    }
    assert removed, "the Dockerfile drops the unused models"
    assert not loaded & removed
    for model in loaded:
        assert f'test -f "$models/{model}"' in dockerfile


def test_the_build_context_leaves_out_the_virtualenv_and_data() -> None:
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    assert ignore[next(i for i, line in enumerate(ignore) if not line.startswith("#"))] == "*"
    assert {"!src/", "!pyproject.toml", "!constraints.txt", "!README.md"} <= set(ignore)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded = yaml.safe_load((ROOT / "compose.yaml").read_text())
    assert isinstance(loaded, dict)
    return loaded


def test_compose_has_every_service_of_the_deployment(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == COMPOSE_SERVICES
    api, worker = services["api"], services["worker"]
    assert api["command"] == ["serve", "--no-worker"]
    assert any(str(port).endswith(":8003") for port in api["ports"])
    assert worker["command"] == ["worker"]
    assert worker["healthcheck"] == {"disable": True}  # no HTTP in a worker
    assert "replicas" in worker["deploy"]
    assert "ports" not in worker and "container_name" not in worker  # so it scales
    for name in ("api", "worker"):
        depends = services[name]["depends_on"]
        assert depends["migrate"] == {"condition": "service_completed_successfully"}
    assert services["migrate"]["command"] == ["migrate"]
    assert "pgvector" in services["postgres"]["image"]


def test_compose_points_minio_events_at_the_storage_events_endpoint(
    compose: dict[str, Any],
) -> None:
    minio = compose["services"]["minio"]["environment"]
    assert minio["MINIO_NOTIFY_WEBHOOK_ENDPOINT_MEDIAPLANE"] == "http://api:8003/v1/storage/events"
    assert "STORAGE_EVENTS_SECRET" in minio["MINIO_NOTIFY_WEBHOOK_AUTH_TOKEN_MEDIAPLANE"]
    init = "\n".join(compose["services"]["minio-init"]["command"])
    assert "mc mb" in init and "arn:minio:sqs::MEDIAPLANE:webhook" in init
    api_env = compose["services"]["api"]["environment"]
    assert "STORAGE_EVENTS_SECRET" in api_env["STORAGE_EVENTS_SECRET"]


def compose_variables() -> set[str]:
    text = (ROOT / "compose.yaml").read_text()
    # ${NAME}, ${NAME:-default}, ${NAME:?error}; `$$NAME` is a literal for the container's shell.
    return set(re.findall(r"(?<!\$)\$\{([A-Z0-9_]+)", text))


def env_example() -> dict[str, str]:
    values: dict[str, str] = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            values[name] = value
    return values


def commented_env_example() -> set[str]:
    return set(re.findall(r"^# ?([A-Z0-9_]+)=", (ROOT / ".env.example").read_text(), re.M))


def test_env_example_lists_every_variable_compose_uses() -> None:
    documented = set(env_example()) | commented_env_example()
    missing = compose_variables() - documented
    assert not missing, f".env.example lacks {sorted(missing)}"


def setting_names() -> set[str]:
    names: set[str] = set()
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias
        choices = getattr(alias, "choices", None)
        if choices:
            names |= {str(choice).upper() for choice in choices}
        else:
            names.add(name.upper())
    return names


def test_env_example_names_only_real_settings_or_compose_variables() -> None:
    """A misspelt setting in .env would be ignored silently (extra="ignore"): catch it here."""
    known = setting_names() | compose_variables()
    unknown = (set(env_example()) | commented_env_example()) - known
    assert not unknown, f".env.example names what nothing reads: {sorted(unknown)}"
    assert not [name for name, value in env_example().items() if value == ""], (
        "an empty value is a value: comment optional settings out instead"
    )


def test_the_image_keeps_botocore_models_of_every_aws_service_the_code_calls() -> None:
    """The Dockerfile deletes botocore's descriptions of the services we never call: a new
    `client("...")` in the code must be kept there too, or it fails only inside the image."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    kept = set(re.findall(r"! -name ([a-z0-9-]+)", dockerfile))
    called = set()
    for source in (ROOT / "src" / "mediaplane").rglob("*.py"):
        called |= set(re.findall(r"\.client\(\s*\"([a-z0-9-]+)\"", source.read_text()))
    assert called <= kept, f"botocore models deleted but used: {sorted(called - kept)}"
    assert {"s3", "rekognition"} <= called  # the scan works

"""What operations watch: Prometheus metrics, the probes, and the job fields of log lines."""

from __future__ import annotations

import io
import json

import pytest
import structlog
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from tests.imaging import factories
from tests.jobs.helpers import drain, upload_photo

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture
def photographer(make_token) -> str:
    return make_token(aud="media", roles=["photographer"], sub="ph-ops")


def scrape(client: TestClient) -> tuple[set[str], Samples]:
    """GET /metrics: the metric family names, and every sample by (name, labels)."""
    response = client.get("/metrics")
    assert response.status_code == 200
    families = list(text_string_to_metric_families(response.text))
    samples = {(s.name, frozenset(s.labels.items())): s.value for f in families for s in f.samples}
    return {f.name for f in families}, samples


def sample(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def jobs_done(task: str) -> float:
    # The counter lives in the process-wide registry: other tests add to it too.
    value = REGISTRY.get_sample_value("mediaplane_jobs_total", {"task": task, "outcome": "done"})
    return value or 0.0


def test_metrics_after_processing(client: TestClient, app: FastAPI, photographer: str) -> None:
    before = jobs_done("generate_thumbnail")
    for _ in range(2):
        upload_photo(client, photographer, factories.jpeg_bytes(640, 480))
    _, waiting = scrape(client)
    assert sample(waiting, "mediaplane_queue_jobs", task="generate_thumbnail", status="todo") == 2
    assert sample(waiting, "mediaplane_steps", step="thumbnail", status="queued") == 2

    drain(app)
    names, samples = scrape(client)
    thumbnails = sample(samples, "mediaplane_jobs_total", task="generate_thumbnail", outcome="done")
    assert thumbnails is not None and thumbnails >= 1
    assert thumbnails - before == 2
    assert any(
        name == "mediaplane_step_duration_seconds_bucket" and ("step", "thumbnail") in labels
        for name, labels in samples
    )
    assert "mediaplane_queue_jobs" in names
    assert (
        sample(samples, "mediaplane_queue_jobs", task="generate_thumbnail", status="todo") is None
    )
    assert sample(samples, "mediaplane_uploads", kind="photo", status="uploaded") == 2
    assert sample(samples, "mediaplane_steps", step="watermark", status="done") == 2


def test_healthz(client: TestClient) -> None:
    response = client.get("/healthz")
    assert (response.status_code, response.json()) == (200, {"status": "ok"})


def test_readyz_checks_database_and_storage(client: TestClient) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "checks": {"database": "ok", "storage": "ok", "worker": "disabled"},
    }


def test_readyz_is_503_when_the_store_fails(
    client: TestClient, app: FastAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unreachable() -> None:
        raise ConnectionError("store down")

    monkeypatch.setattr(app.state.store, "check", unreachable)
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json() == {
        "status": "unavailable",
        "checks": {"database": "ok", "storage": "error: ConnectionError", "worker": "disabled"},
    }


def test_every_log_line_of_a_job_names_the_job_and_the_photo(
    client: TestClient, app: FastAPI, photographer: str, json_lines: io.StringIO
) -> None:
    good = upload_photo(client, photographer, factories.jpeg_bytes(640, 480))["photoId"]
    corrupt = upload_photo(client, photographer, factories.truncated_jpeg())["photoId"]
    json_lines.seek(0)
    json_lines.truncate()
    drain(app)
    lines = [json.loads(line) for line in json_lines.getvalue().splitlines() if line]

    # Ours ("step done", "step failed...") and procrastinate's job lines ("Starting job ...",
    # "Job ... ended with status: ..."); its worker lines ("Waiting for job to finish" at
    # shutdown) are about the worker. Periodic upkeep jobs have a job_id and no photo.
    job_lines = [line for line in lines if line["event"].startswith(("Starting job ", "Job "))]
    assert job_lines and all(isinstance(line.get("job_id"), int) for line in job_lines)
    of_jobs = [
        line
        for line in lines
        if "step" in line or line["event"].startswith(("Starting job generate_", "Job generate_"))
    ]
    assert {line["event"] for line in of_jobs} >= {"step done", "step failed: input refused"}
    assert any(line["event"].startswith("Starting job generate_") for line in of_jobs)
    assert any("ended with status" in line["event"] for line in of_jobs)
    for line in of_jobs:
        assert isinstance(line.get("job_id"), int), line
        assert line.get("photo_id") in (good, corrupt), line
    step_lines = {(line["photo_id"], line["step"]) for line in of_jobs if "step" in line}
    assert step_lines == {
        (photo, step) for photo in (good, corrupt) for step in ("thumbnail", "watermark")
    }


def test_json_error_lines_carry_the_traceback(json_lines: io.StringIO) -> None:
    log = structlog.get_logger("mediaplane.test").bind(job_id=7, photo_id="p")
    try:
        raise RuntimeError("store timed out")
    except RuntimeError:
        log.exception("step error")
    (line,) = [json.loads(line) for line in json_lines.getvalue().splitlines()]
    assert (line["job_id"], line["photo_id"], line["level"]) == (7, "p", "error")
    assert "RuntimeError: store timed out" in line["exception"]

"""One access-log line per request, a request id in the header and in every error body, and
periodic upkeep that stays quiet."""

from __future__ import annotations

import io
import json
import logging
import re

import procrastinate
from fastapi import FastAPI
from fastapi.testclient import TestClient

from mediaplane.jobs.tasks import PERIODIC_TASKS
from mediaplane.jobs.worker import build_queue


def access_lines(buffer: io.StringIO) -> list[dict]:
    lines = [json.loads(line) for line in buffer.getvalue().splitlines() if line.strip()]
    return [line for line in lines if line.get("logger") == "mediaplane.access"]


def test_one_access_line_per_request_with_its_fields(
    client: TestClient, json_lines: io.StringIO
) -> None:
    response = client.get("/healthz", headers={"X-Request-Id": "req-42"})
    assert response.headers["X-Request-Id"] == "req-42"
    (line,) = access_lines(json_lines)
    assert line["event"] == "request"
    assert line["level"] == "info"
    assert (line["method"], line["path"], line["status"], line["request_id"]) == (
        "GET",
        "/healthz",
        200,
        "req-42",
    )
    assert isinstance(line["duration_ms"], float) and line["duration_ms"] >= 0
    assert "query" not in line
    assert line["timestamp"]


def test_presigned_url_signatures_never_reach_the_log(
    client: TestClient, json_lines: io.StringIO
) -> None:
    secrets = {
        "X-Mp-Signature": "mpsig0123456789",
        "X-Amz-Signature": "amzsig0123456789",
        "X-Amz-Credential": "AKIDEXAMPLE/20260101/us-east-1/s3/aws4_request",
        "X-Amz-Security-Token": "sessiontoken0123",
        "x-authgear-signature": "agsig0123456789",
    }
    query = "&".join(f"{k}={v}" for k, v in secrets.items()) + "&X-Mp-Expires=99"
    response = client.get(f"/_storage/photos/a/b/original.jpg?{query}")
    assert response.status_code in (403, 404)
    (line,) = access_lines(json_lines)
    assert line["path"] == "/_storage/photos/a/b/original.jpg"
    # Every line the service wrote (httpx's lines are the test client's own requests).
    text = "\n".join(
        line for line in json_lines.getvalue().splitlines() if '"logger": "httpx"' not in line
    )
    for value in secrets.values():
        assert value not in text
    assert "X-Mp-Signature=REDACTED" in line["query"]
    assert "X-Mp-Expires=99" in line["query"]  # not a secret: kept for debugging


def test_problem_json_errors_carry_the_request_id_of_the_header(
    client: TestClient, json_lines: io.StringIO
) -> None:
    # A domain error (no token), a validation error and an unknown path.
    for response in (
        client.post("/v1/photos/upload-url", json={"projectId": "x"}),
        client.get("/no/such/path"),
    ):
        assert response.headers["content-type"] == "application/problem+json"
        body = response.json()
        assert body["requestId"] == response.headers["X-Request-Id"]
        assert re.fullmatch(r"[0-9a-f]{32}", body["requestId"])  # generated
        assert {"type", "title", "status", "code", "detail"} <= body.keys()
    logged = {line["request_id"] for line in access_lines(json_lines)}
    assert len(logged) == 2  # one id per request, each in its line


def test_validation_errors_carry_the_given_request_id(client: TestClient, make_token) -> None:
    token = make_token(aud="media", roles=["photographer"])
    response = client.post(
        "/v1/photos/upload-url",
        json={"projectId": "not-a-uuid"},
        headers={"Authorization": f"Bearer {token}", "X-Request-Id": "from-the-proxy"},
    )
    assert response.status_code == 422
    assert response.json()["requestId"] == "from-the-proxy"
    assert response.headers["X-Request-Id"] == "from-the-proxy"


def test_authgear_errors_carry_the_request_id_inside_error(client: TestClient) -> None:
    response = client.get("/_images/app/nope/profile", headers={"X-Request-Id": "ag-1"})
    assert response.status_code == 404
    error = response.json()["error"]
    assert (error["name"], error["reason"], error["code"]) == ("NotFound", "ImageNotFound", 404)
    assert error["info"]["request_id"] == "ag-1"


def test_a_request_id_that_is_not_an_id_is_replaced(client: TestClient) -> None:
    response = client.get("/healthz", headers={"X-Request-Id": "two words\tand a tab" * 20})
    assert re.fullmatch(r"[0-9a-f]{32}", response.headers["X-Request-Id"])


def test_an_unexpected_error_is_500_with_the_request_id(
    app: FastAPI, client: TestClient, json_lines: io.StringIO
) -> None:
    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("boom")

    response = client.get("/boom", headers={"X-Request-Id": "r-500"})
    assert response.status_code == 500
    assert response.json()["requestId"] == "r-500"
    assert response.headers["X-Request-Id"] == "r-500"
    (line,) = access_lines(json_lines)
    assert (line["status"], line["request_id"]) == (500, "r-500")


def test_streamed_downloads_are_not_buffered(client: TestClient, json_lines: io.StringIO) -> None:
    # The OpenAPI page is small; what matters is that a streaming response passes through the
    # middleware whole, with the header, and is logged once.
    with client.stream("GET", "/openapi.json") as response:
        body = b"".join(response.iter_bytes())
    assert json.loads(body)["info"]["title"] == "Mediaplane"
    assert response.headers["X-Request-Id"]
    assert len(access_lines(json_lines)) == 1


def test_periodic_upkeep_jobs_are_debug_lines(app: FastAPI, json_lines: io.StringIO) -> None:
    procrastinate_log = logging.getLogger("procrastinate.worker")
    upkeep = {"id": 1, "task_name": "sweep_uploads", "task_kwargs": {"timestamp": 0}}
    step = {"id": 2, "task_name": "generate_thumbnail", "task_kwargs": {"upload_id": "u"}}
    procrastinate_log.info("Starting job sweep_uploads[1]", extra={"job": upkeep})
    procrastinate_log.error("Job sweep_uploads[1] ended with status: Error", extra={"job": upkeep})
    procrastinate_log.info("Starting job generate_thumbnail[2]", extra={"job": step})
    events = [json.loads(line)["event"] for line in json_lines.getvalue().splitlines()]
    assert events == [
        "Job sweep_uploads[1] ended with status: Error",  # failures stay visible
        "Starting job generate_thumbnail[2]",
    ]


def test_every_periodic_task_is_known_to_the_log_filter(app: FastAPI) -> None:
    queue: procrastinate.App = build_queue(app.state.jobs)
    periodic = {name for name, _ in queue.periodic_registry.periodic_tasks}
    assert periodic and periodic <= PERIODIC_TASKS

"""`mediaplane jobs` and `mediaplane reprocess`, run as an operator would, on the test database."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from typer.testing import CliRunner, Result

from mediaplane.cli import app as cli
from mediaplane.jobs.models import StepStatus
from mediaplane.settings import Settings
from tests.imaging import factories
from tests.jobs.helpers import drain, steps_of, upload_photo, wait_until
from tests.media_api.helpers import bearer, put_to_presigned


@pytest.fixture
def photographer(make_token) -> str:
    return make_token(aud="media", roles=["photographer"], sub="ph-cli")


@pytest.fixture
def operator_env(monkeypatch: pytest.MonkeyPatch, settings: Settings, tmp_path: Path) -> None:
    """The environment of an operator's shell on a machine of this deployment."""
    monkeypatch.chdir(tmp_path)  # no stray `.env` from the working directory
    monkeypatch.setenv("DATABASE_URL", str(settings.database_url))
    monkeypatch.setenv("MEDIAPLANE_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("FACE_ENGINE", settings.face_engine)
    monkeypatch.setenv("STORAGE_URL", Path(settings.local_storage_root).absolute().as_uri())
    monkeypatch.setenv("IMAGES_SIGNING_KEY", str(settings.images_signing_key))
    monkeypatch.setenv("STORAGE_SIGNING_SECRET", str(settings.storage_signing_secret))
    monkeypatch.setenv("COLUMNS", "200")  # rich tables: one line per row


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def table_row(output: str, first_cell: str) -> list[str]:
    """The cells of the rich table row starting with `first_cell`."""
    for line in output.splitlines():
        cells = [c.strip() for c in line.split("│")[1:-1]]
        if cells and cells[0] == first_cell:
            return cells
    raise AssertionError(f"no row {first_cell!r} in:\n{output}")


def photo_id(photo: dict) -> uuid.UUID:
    return uuid.UUID(photo["photoId"])


@pytest.fixture
def processed(client, app: FastAPI, photographer: str) -> dict[str, uuid.UUID]:
    """A good and a corrupt photo of one project, both processed."""
    project = uuid.uuid4()
    good = upload_photo(client, photographer, factories.jpeg_bytes(640, 480), project)
    corrupt = upload_photo(client, photographer, factories.truncated_jpeg(), project)
    drain(app)
    return {"project": project, "good": photo_id(good), "corrupt": photo_id(corrupt)}


@pytest.fixture
def background_worker(app: FastAPI) -> Iterator[None]:
    """A worker that drains the queue as soon as steps are queued again."""
    errors: list[BaseException] = []

    def work() -> None:
        try:
            wait_until(
                lambda: any(s.status == StepStatus.QUEUED for s in steps_of(app)), timeout=20
            )
            drain(app)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    yield
    thread.join(timeout=30)
    assert not errors, errors


def test_jobs_shows_counts_and_failure_reasons(operator_env, processed) -> None:
    result = run("jobs")
    assert result.exit_code == 0, result.output
    # step │ queued │ running │ done │ failed
    assert table_row(result.stdout, "thumbnail") == ["thumbnail", "0", "0", "1", "1"]
    assert table_row(result.stdout, "watermark") == ["watermark", "0", "0", "1", "1"]
    # kind │ pending │ uploaded │ rejected │ expired │ erased
    assert table_row(result.stdout, "photo") == ["photo", "0", "2", "0", "0", "0"]
    assert table_row(result.stdout, "(empty)")  # nothing waiting in the queue
    failure = table_row(result.stdout, str(processed["corrupt"]))
    assert failure[1] == str(processed["project"])
    assert failure[3].startswith("corrupt_image")


def test_reprocess_no_wait_queues_the_photo_again(app: FastAPI, operator_env, processed) -> None:
    result = run("reprocess", "--photo", str(processed["good"]), "--no-wait")
    assert result.exit_code == 0, result.output
    assert "queued 2 steps (thumbnail, watermark) of 1 photo\n" in result.output
    states = {(s.upload_id, s.step): s.status for s in steps_of(app)}
    assert states == {
        (processed["good"], "thumbnail"): StepStatus.QUEUED,
        (processed["good"], "watermark"): StepStatus.QUEUED,
        (processed["corrupt"], "thumbnail"): StepStatus.FAILED,
        (processed["corrupt"], "watermark"): StepStatus.FAILED,
    }


def test_jobs_lists_selfies_erased_on_revocation(
    client, make_token, operator_env, processed
) -> None:
    user = bearer(make_token(aud="media", roles=["user"], sub="attendee-cli"))
    assert client.put("/v1/me/consents/biometric_processing", headers=user).status_code == 201
    upload = client.post("/v1/selfie/upload-url", headers=user).json()
    image = factories.jpeg_bytes(320, 240)
    assert put_to_presigned(client, upload["uploadUrl"], image).status_code == 200
    assert client.delete("/v1/me/consents/biometric_processing", headers=user).status_code == 200
    result = run("jobs")
    assert result.exit_code == 0, result.output
    # kind │ pending │ uploaded │ rejected │ expired │ erased
    assert table_row(result.stdout, "selfie") == ["selfie", "0", "0", "0", "0", "1"]


def test_reprocess_of_a_project_says_photos_and_steps_in_the_plural(
    operator_env, processed
) -> None:
    result = run("reprocess", "--project", str(processed["project"]), "--no-wait")
    assert result.exit_code == 0, result.output
    assert "queued 4 steps (thumbnail, watermark) of 2 photos" in result.output
    result = run("reprocess", "--photo", str(processed["good"]), "--step", "thumbnail", "--no-wait")
    assert "queued 1 step (thumbnail) of 1 photo\n" in result.output


def test_reprocess_waits_for_the_workers_and_summarizes(
    app: FastAPI, operator_env, processed, background_worker
) -> None:
    result = run("reprocess", "--photo", str(processed["good"]), "--step", "thumbnail")
    assert result.exit_code == 0, result.output
    assert table_row(result.stdout, "done") == ["done", "1"]
    assert table_row(result.stdout, "failed") == ["failed", "0"]
    completions = {(s.upload_id, s.step): s.completions for s in steps_of(app)}
    assert completions[processed["good"], "thumbnail"] == 2
    assert completions[processed["good"], "watermark"] == 1


def test_reprocess_of_a_project_reports_failures_and_exits_1(
    operator_env, processed, background_worker
) -> None:
    result = run("reprocess", "--project", str(processed["project"]))
    assert result.exit_code == 1, result.output
    assert table_row(result.stdout, "done") == ["done", "2"]
    assert table_row(result.stdout, "failed") == ["failed", "2"]
    failure = table_row(result.stdout, str(processed["corrupt"]))
    assert failure[2].startswith("corrupt_image")


def test_reprocess_of_an_unknown_photo_says_so(operator_env) -> None:
    result = run("reprocess", "--photo", str(uuid.uuid4()), "--no-wait")
    assert result.exit_code == 1
    assert "nothing to reprocess" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "exactly one of --project or --photo"),
        (["--project", str(uuid.uuid4()), "--photo", str(uuid.uuid4())], "exactly one of"),
        (["--photo", str(uuid.uuid4()), "--step", "faces"], "faces processing is not enabled"),
        (["--photo", str(uuid.uuid4()), "--step", "selfie"], "--step"),
        (["--photo", "not-a-uuid"], "--photo"),
    ],
)
def test_reprocess_refuses_bad_arguments(operator_env, args: list[str], message: str) -> None:
    result = run("reprocess", *args)
    assert result.exit_code == 2, result.output
    assert message in result.output

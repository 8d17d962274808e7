"""Real worker processes: a SIGKILL in the middle of a job, and two workers on one queue."""

from __future__ import annotations

import asyncio
import signal
import subprocess

import pytest
import pyvips

from mediaplane.jobs.models import StepStatus
from mediaplane.jobs.tasks import retry_stalled
from mediaplane.jobs.worker import build_queue
from tests.imaging import factories
from tests.jobs.helpers import SETTLED, drain, start_worker, steps_of, upload_photo, wait_until

pytestmark = pytest.mark.slow


def large_jpeg(seed: int) -> bytes:
    # 24 MP: each step takes long enough here for a kill to land in the middle of one.
    image = pyvips.Image.gaussnoise(6000, 4000, mean=128 + seed, sigma=40).cast("uchar")
    return image.bandjoin([image, image]).jpegsave_buffer(Q=85)


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_sigkilled_worker_loses_nothing(client, app, runtime, settings, make_token) -> None:
    token = make_token(aud="media", roles=["photographer"])
    photos = [upload_photo(client, token, large_jpeg(i)) for i in range(3)]
    worker = start_worker(settings, concurrency=1)
    try:
        wait_until(
            lambda: any(s.status == StepStatus.RUNNING for s in steps_of(app)),
            timeout=60,
            interval=0.02,
        )
        worker.kill()  # SIGKILL: no cleanup, no status update, heartbeat stops
        worker.wait()
    finally:
        stop(worker)
    interrupted = {(s.upload_id, s.step) for s in steps_of(app) if s.status == StepStatus.RUNNING}
    assert interrupted, "the kill should have landed in the middle of a job"

    # A new worker: once the dead one's heartbeat is stale, its job is retried.
    queue = build_queue(app.state.jobs)

    async def recover() -> int:
        async with queue.open_async():
            retried = 0
            for _ in range(60):
                retried = await retry_stalled(queue, seconds_since_heartbeat=3)
                if retried:
                    return retried
                await asyncio.sleep(0.25)
            return retried

    assert asyncio.run(recover()) >= 1
    drain(app)
    rows = steps_of(app)
    assert len(rows) == 2 * len(photos)
    assert {s.status for s in rows} == {StepStatus.DONE}
    # Idempotent outputs: whatever ran twice wrote the same keys; every derivative is whole.
    for photo in photos:
        for name, width in (("thumb-400", 400), ("thumb-800", 800), ("watermarked", 2048)):
            image = pyvips.Image.new_from_buffer(
                runtime.store.read(photo["key"].replace("original", name)), ""
            )
            assert image.width == width
    assert all(s.completions == 1 for s in rows if (s.upload_id, s.step) not in interrupted)


def test_two_workers_share_a_batch_without_doing_anything_twice(
    client, app, settings, make_token
) -> None:
    token = make_token(aud="media", roles=["photographer"])
    for i in range(50):
        upload_photo(client, token, factories.jpeg_bytes(1000 + i, 700, noise=i % 2 == 0))
    workers = [start_worker(settings, concurrency=2) for _ in range(2)]
    try:
        # All 100 steps settled (a subset test alone would pass on no steps at all).
        wait_until(
            lambda: len(rows := steps_of(app)) == 100 and {s.status for s in rows} <= SETTLED,
            timeout=180,
            interval=0.5,
        )
    finally:
        for worker in workers:
            stop(worker)
    rows = steps_of(app)
    assert len(rows) == 100
    assert {s.status for s in rows} == {StepStatus.DONE}
    assert {(s.attempts, s.completions) for s in rows} == {(1, 1)}

"""One photo end to end: upload through the API until every step is done, CPU by step.

    .venv/bin/python bench/pipeline.py                   # 24 photos of 12 MP, one face each
    .venv/bin/python bench/pipeline.py --photos 8 --megapixels 24 --concurrency 2

What it does:

1. Starts `mediaplane serve --no-worker` (embedded PostgreSQL, local objects) and one
   `mediaplane worker --concurrency C --metrics-port P` beside it, as a scaled-out deployment
   runs them. With C = 1 (the default) one job runs at a time, so the worker's per-step CPU
   counter (`mediaplane_step_cpu_seconds`, process CPU while the step ran: libvips and dlib
   threads included) is exact.
2. Makes N real-size JPEGs (default 4000×3000) of a textured scene with one face in it (a
   fixture portrait scaled to ~700 px, placed at a different spot in each), cached under /tmp.
3. Asks for N upload URLs in one request (`POST /v1/photos/upload-urls`), PUTs every photo
   (8 at a time), and waits until every step of every photo is `done`.
4. Prints photos/s from the first PUT to the last step done, CPU-seconds per photo by step
   (thumbnails, watermark, faces) and in all (the worker's whole process CPU / N as a cross
   check), and the goal of issue 13: at most 0.6 CPU-s per 12 MP photo with one face.
5. Does it twice, on fresh servers: first with `CARRY_PHOTO_STEPS=false` (every step decodes
   the original on its own: the peer), then with the default, where a photo's first job
   carries its other steps on one decode. With one decode, the decode is counted in the first
   step that runs (the thumbnails), so compare the totals; the ratio is printed.

Results: a table on stdout and bench/results/pipeline-{12,36}mp.json.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import platform
import re
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import psutil
import pyvips
from _common import FIXTURES, ROOT, Server, free_port, log

RESULTS_DIR = ROOT / "bench" / "results"
CACHE = Path(tempfile.gettempdir()) / "mediaplane-bench-pipeline"
GOAL_CPU_SECONDS = 0.6  # per 12 MP photo with one face (issue 13)
# Peak RSS of a worker deriving a 36 MP JPEG, over its idle size (issue 13; imgproxy publishes
# 194 MB for the same class of work).
RSS_GOAL_MB = 200


class PeakRss(threading.Thread):
    """Samples a process's RSS every 10 ms and keeps the peak."""

    def __init__(self, proc: psutil.Process) -> None:
        super().__init__(daemon=True)
        self.proc = proc
        self.peak = proc.memory_info().rss
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.01):
            try:
                self.peak = max(self.peak, self.proc.memory_info().rss)
            except psutil.Error:
                return


STEPS = ("thumbnail", "watermark", "faces")


def make_photo(path: Path, width: int, height: int, seed: int) -> None:
    """A textured scene (gradients and noise, like a camera JPEG's entropy) with one face."""
    x = pyvips.Image.xyz(width, height)
    r = (x[0] * (255 / width)).cast("uchar")
    g = (x[1] * (255 / height)).cast("uchar")
    noise = pyvips.Image.gaussnoise(width, height, mean=128, sigma=30 + seed % 7)
    scene = r.bandjoin([g, noise.cast("uchar")]).copy(interpretation="srgb")
    face = pyvips.Image.new_from_file(str(FIXTURES / "faces" / "obama_1.jpg"))
    face = face.resize(700 / face.height)
    left = (seed * 997) % max(1, width - face.width)
    top = (seed * 613) % max(1, height - face.height)
    scene = scene.insert(face, left, top)
    scene.jpegsave(str(path), Q=90)


def photos(n: int, megapixels: float) -> list[Path]:
    width = round((megapixels * 1e6 * 4 / 3) ** 0.5)
    height = round(width * 3 / 4)
    CACHE.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        path = CACHE / f"scene-{width}x{height}-{i}.jpg"
        if not path.exists():
            log(f"generating {path.name}")
            make_photo(path, width, height, i)
        out.append(path)
    return out


def scrape(port: int) -> dict[str, float]:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    found = {}
    for step, value in re.findall(
        r'^mediaplane_step_cpu_seconds_total\{step="([a-z_]+)"\} ([0-9.e+-]+)$', text, re.M
    ):
        found[step] = float(value)
    return found


def run(args: argparse.Namespace, *, carry: bool) -> dict[str, Any]:
    files = photos(args.photos, args.megapixels)
    server = Server("pipeline", env={"CARRY_PHOTO_STEPS": "true" if carry else "false"})
    metrics_port = free_port()
    worker = None
    try:
        server.start("--no-worker")
        worker = server.spawn(
            "worker",
            "--concurrency",
            str(args.concurrency),
            "--metrics-port",
            str(metrics_port),
            log_name="worker.log",
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                before = scrape(metrics_port)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline or worker.poll() is not None:
                    raise RuntimeError(f"worker did not start:\n{server.tail()}") from None
                time.sleep(0.3)
        worker_proc = psutil.Process(worker.pid)
        cpu0 = sum(worker_proc.cpu_times()[:2])
        idle_rss = worker_proc.memory_info().rss
        sampler = PeakRss(worker_proc)
        sampler.start()
        auth = {"Authorization": "Bearer " + server.token(aud="media", role="photographer")}
        with httpx.Client(base_url=server.base, timeout=60, headers=auth) as client:
            issued = client.post(
                "/v1/photos/upload-urls",
                json={"projectId": str(uuid.uuid4()), "count": len(files)},
            )
            issued.raise_for_status()
            items = issued.json()["items"]
            t0 = time.perf_counter()

            def put(pair: tuple[dict[str, Any], Path]) -> None:
                item, path = pair
                r = httpx.put(
                    item["uploadUrl"],
                    content=path.read_bytes(),
                    headers={"Content-Type": "image/jpeg"},
                    timeout=120,
                )
                r.raise_for_status()

            with concurrent.futures.ThreadPoolExecutor(8) as pool:
                list(pool.map(put, zip(items, files, strict=True)))
            uploaded = time.perf_counter() - t0
            log(f"{len(files)} photos uploaded in {uploaded:.1f} s; waiting for every step")
            pending = {item["photoId"] for item in items}
            failed: dict[str, Any] = {}
            deadline = time.monotonic() + args.timeout
            while pending and time.monotonic() < deadline:
                for photo_id in list(pending):
                    view = client.get(f"/v1/photos/{photo_id}").json()
                    steps = view.get("steps") or {}
                    if any(s["status"] == "failed" for s in steps.values()):
                        failed[photo_id] = steps
                        pending.discard(photo_id)
                    elif len(steps) == len(STEPS) and all(
                        s["status"] == "done" for s in steps.values()
                    ):
                        pending.discard(photo_id)
                time.sleep(0.2)
            wall = time.perf_counter() - t0
        after = scrape(metrics_port)
        worker_cpu = sum(worker_proc.cpu_times()[:2]) - cpu0
        sampler.stop.set()
        sampler.join()
    finally:
        if worker is not None and worker.poll() is None:
            worker.terminate()
            worker.wait(timeout=30)
        server.stop(keep=args.keep)
    done = len(files) - len(pending) - len(failed)
    by_step = {s: round((after.get(s, 0) - before.get(s, 0)) / max(1, done), 3) for s in STEPS}
    total = round(sum(by_step.values()), 3)
    return {
        "benchmark": "pipeline",
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": {"cpus": psutil.cpu_count(), "python": platform.python_version()},
        "plan": {
            "photos": len(files),
            "megapixels": args.megapixels,
            "faces_per_photo": 1,
            "worker_concurrency": args.concurrency,
            "carry_photo_steps": carry,
        },
        "done": done,
        "failed": failed,
        "lost": sorted(pending),
        "wall_seconds": round(wall, 2),
        "photos_per_second": round(done / wall, 3) if wall else 0,
        "cpu_seconds_per_photo": {**by_step, "all_steps": total},
        "worker_process_cpu_seconds_per_photo": round(worker_cpu / max(1, done), 3),
        "worker_rss_mb": {
            "idle": round(idle_rss / 2**20),
            "peak": round(sampler.peak / 2**20),
            "peak_over_idle": round((sampler.peak - idle_rss) / 2**20),
            "goal_over_idle": RSS_GOAL_MB,
        },
        "goal": {
            "cpu_seconds_per_photo": GOAL_CPU_SECONDS,
            "met": total <= GOAL_CPU_SECONDS and args.megapixels <= 12,
        },
        "loadavg": psutil.getloadavg(),
    }


def render(r: dict[str, Any]) -> str:
    c = r["cpu_seconds_per_photo"]
    m = r["worker_rss_mb"]
    plan = r["plan"]
    how = (
        "one decode per photo (CARRY_PHOTO_STEPS=true)"
        if plan["carry_photo_steps"]
        else "one decode per step (CARRY_PHOTO_STEPS=false)"
    )
    lines = [
        f"Pipeline, {how}: {plan['photos']} photos of {plan['megapixels']} MP with one face, "
        f"worker concurrency {plan['worker_concurrency']}, {r['machine']['cpus']} cores "
        f"(load average {r['loadavg'][0]:.1f})",
        f"  done {r['done']}, failed {len(r['failed'])}, lost {len(r['lost'])}; "
        f"{r['photos_per_second']} photos/s from the first PUT to the last step",
        "  CPU-s per photo: "
        + ", ".join(f"{s} {c[s]}" for s in STEPS)
        + f"; all steps {c['all_steps']} (worker process in all: "
        f"{r['worker_process_cpu_seconds_per_photo']})",
        f"  goal ≤ {r['goal']['cpu_seconds_per_photo']} CPU-s per 12 MP photo with one face: "
        + (
            "n/a (not 12 MP)"
            if plan["megapixels"] != 12
            else ("PASS" if r["goal"]["met"] else "MISS")
        ),
        f"  worker RSS: idle {m['idle']} MB, peak {m['peak']} MB: {m['peak_over_idle']} MB over "
        f"idle (goal for 36 MP: ≤ {m['goal_over_idle']} MB; imgproxy publishes 194 MB)",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=24)
    parser.add_argument("--megapixels", type=float, default=12)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--keep", action="store_true")
    parser.add_argument(
        "--no-peer",
        action="store_true",
        help="skip the run with CARRY_PHOTO_STEPS=false (each step decoding on its own)",
    )
    args = parser.parse_args()
    if not 1 <= args.photos <= 100:
        parser.error("--photos: 1 to 100 (one batch of upload URLs)")
    peer = None if args.no_peer else run(args, carry=False)
    report = run(args, carry=True)
    if peer is not None:
        report["peer"] = peer
    results = RESULTS_DIR / f"pipeline-{args.megapixels:g}mp.json"
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(json.dumps(report, indent=2) + "\n")
    if peer is not None:
        print(render(peer))
    print(render(report))
    if peer is not None:
        ours, theirs = report["cpu_seconds_per_photo"], peer["cpu_seconds_per_photo"]
        print(
            f"  one decode per photo against one per step, same run: "
            f"{theirs['all_steps'] / max(ours['all_steps'], 1e-9):.2f}x fewer CPU-s per photo, "
            f"{report['photos_per_second'] / max(peer['photos_per_second'], 1e-9):.2f}x photos/s"
        )
    runs = [report] if peer is None else [peer, report]
    return 0 if all(r["done"] == r["plan"]["photos"] for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())

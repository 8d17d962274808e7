"""Soak: a stream of uploads on the embedded default while the service is hurt on purpose.

    .venv/bin/python bench/soak.py                 # about 5 minutes, then the drain
    .venv/bin/python bench/soak.py --seconds 60    # a short run

For `--seconds` (300 by default) photographers upload real photos through presigned URLs and
attendees grant consent and upload selfies, as clients do: retrying with backoff when the
service answers 503 or cannot be reached. Meanwhile:

- at 30 % of the run the embedded PostgreSQL is stopped (immediate shutdown) for 5 s, then
  started again;
- at 60 % the service is SIGKILLed and started again (same data dir, same port);
- all along, unauthenticated clients send 60 MB JSON bodies (4 at once) and hold sockets that
  dribble their headers one byte at a time (slowloris).

Then it waits for every upload a client saw accepted to be fully processed (photos: every step
done; selfies: face indexed) and prints uploads attempted / accepted / fully processed / lost,
the peak RSS of the service process, and the p50/p99 latency of `POST /v1/photos/upload-url`
over the run. It exits 1 if any accepted upload was lost or failed, or if the peak RSS passed
the documented budget (`--rss-budget-mb`, docs/operations.md "Memory budget").

Results: a summary on stdout and bench/results/soak.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import random
import socket
import sys
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx
import psutil
from _common import FIXTURES, ROOT, Server, log, pct

RESULTS = ROOT / "bench" / "results" / "soak.json"
PHOTOS = sorted((FIXTURES / "exif-orientation").glob("*.jpg")) + sorted(
    (FIXTURES / "faces").glob("*.jpg")
)
SELFIES = [FIXTURES / "faces" / f for f in ("obama_1.jpg", "biden_1.jpg")]
TRANSIENT = {502, 503, 504}
#: Documented in docs/operations.md ("Memory budget"): the serve process with its in-process
#: worker, under load, decode budget included.
RSS_BUDGET_MB = 1024


@dataclass
class Tally:
    attempted: int = 0  # an upload URL was issued and a PUT tried
    accepted: int = 0  # the client saw its PUT accepted (2xx, or 409: already settled)
    abandoned: int = 0  # the client never got its PUT accepted (URL expired while down)
    processed: int = 0
    failed: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    unfinished: list[str] = field(default_factory=list)


@dataclass
class Abuse:
    oversized_sent: int = 0
    oversized_413: int = 0
    oversized_other: dict[str, int] = field(default_factory=dict)
    slow_opened: int = 0
    slow_cut: int = 0
    slow_cut_after_s: list[float] = field(default_factory=list)


class Soak:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.server = Server("soak", env={"LOG_LEVEL": "warning"})
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.photos = Tally()
        self.selfies = Tally()
        self.abuse = Abuse()
        self.accepted_photos: dict[str, str] = {}  # photo id -> photographer token
        self.accepted_selfies: dict[str, str] = {}  # selfie id -> user token
        self.latencies: list[float] = []  # upload-url, ms, answered requests
        self.upload_url_errors: dict[str, int] = {}
        self.events: list[dict[str, Any]] = []
        self.peak_rss = 0
        self.idle_rss = 0
        self.t0 = 0.0

    # --- plumbing ---------------------------------------------------------------------------

    def note(self, what: str) -> None:
        at = time.monotonic() - self.t0
        self.events.append({"at_s": round(at, 1), "event": what})
        log(f"[t+{at:5.1f}s] {what}")

    def count(self, bucket: dict[str, int], key: str) -> None:
        with self.lock:
            bucket[key] = bucket.get(key, 0) + 1

    def backoff(self, response: httpx.Response | None, attempt: int) -> None:
        wait = min(5.0, 0.2 * 2**attempt)
        if response is not None:
            with contextlib.suppress(ValueError):
                wait = min(5.0, float(response.headers.get("retry-after", wait)))
        self.stop.wait(wait * random.uniform(0.8, 1.2))

    def call(
        self, client: httpx.Client, method: str, url: str, *, deadline: float, **kw: Any
    ) -> httpx.Response | None:
        """One API call as a patient client makes it: retried while unreachable or 503."""
        attempt = 0
        while time.monotonic() < deadline:
            response = None
            try:
                response = client.request(method, url, **kw)
                if response.status_code not in TRANSIENT:
                    return response
            except httpx.TransportError:
                pass
            self.backoff(response, attempt)
            attempt += 1
        return None

    def put(self, client: httpx.Client, url: str, body: bytes, tally: Tally) -> bool:
        """PUT to a presigned URL until it is accepted, refused for good, or expires."""
        deadline = time.monotonic() + 120
        response = self.call(
            client,
            "PUT",
            url,
            deadline=deadline,
            content=body,
            headers={"Content-Type": "image/jpeg"},
        )
        with self.lock:
            if response is not None and (
                response.is_success or response.status_code == 409  # an earlier try landed
            ):
                tally.accepted += 1
                return True
            tally.abandoned += 1
        if response is not None:
            self.note(f"PUT refused {response.status_code}: {response.text[:200]}")
        return False

    # --- clients ------------------------------------------------------------------------------

    def photographer(self, token: str, project: str) -> None:
        auth = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=self.server.base, timeout=30) as client:
            while not self.stop.is_set():
                t = time.perf_counter()
                try:
                    r = client.post(
                        "/v1/photos/upload-url", json={"projectId": project}, headers=auth
                    )
                except httpx.TransportError as exc:
                    self.count(self.upload_url_errors, type(exc).__name__)
                    self.backoff(None, 2)
                    continue
                if r.status_code != 201:
                    self.count(self.upload_url_errors, str(r.status_code))
                    self.backoff(r, 2)
                    continue
                with self.lock:
                    self.latencies.append((time.perf_counter() - t) * 1000)
                    self.photos.attempted += 1
                issued = r.json()
                body = random.choice(PHOTOS).read_bytes()
                if self.put(client, issued["uploadUrl"], body, self.photos):
                    with self.lock:
                        self.accepted_photos[issued["photoId"]] = token
                self.stop.wait(self.args.pause)

    def attendee(self, tokens: list[str]) -> None:
        with httpx.Client(base_url=self.server.base, timeout=30) as client:
            for token in tokens:
                if self.stop.is_set():
                    return
                auth = {"Authorization": f"Bearer {token}"}
                deadline = time.monotonic() + 120
                granted = self.call(
                    client,
                    "PUT",
                    "/v1/me/consents/biometric_processing",
                    deadline=deadline,
                    headers=auth,
                    json={},
                )
                if granted is None or granted.status_code not in (200, 201):
                    self.note(f"consent not granted: {granted and granted.status_code}")
                    continue
                r = self.call(
                    client, "POST", "/v1/selfie/upload-url", deadline=deadline, headers=auth
                )
                if r is None or r.status_code != 201:
                    self.note(f"selfie upload-url refused: {r and r.status_code}")
                    continue
                with self.lock:
                    self.selfies.attempted += 1
                issued = r.json()
                if self.put(
                    client, issued["uploadUrl"], random.choice(SELFIES).read_bytes(), self.selfies
                ):
                    with self.lock:
                        self.accepted_selfies[issued["selfieId"]] = token
                self.stop.wait(self.args.pause * 4)

    # --- hostile traffic ---------------------------------------------------------------------

    def oversized_one(self, path: str) -> None:
        method = "PUT" if path.startswith("/v1/me/consents") else "POST"
        size = 60 * 1024 * 1024
        chunk = b"[" + b"0," * (512 * 1024)
        try:
            with socket.create_connection(("127.0.0.1", self.server.port), timeout=10) as s:
                s.sendall(
                    f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json"
                    f"\r\nContent-Length: {size}\r\n\r\n".encode()
                )
                sent = 0
                with contextlib.suppress(OSError):
                    while sent < size and not self.stop.is_set():
                        s.sendall(chunk)
                        sent += len(chunk)
                s.settimeout(10)
                head = s.recv(256).decode("latin-1")
        except OSError as exc:
            self.count(self.abuse.oversized_other, type(exc).__name__)
            return
        status = head.split(" ", 2)[1] if head.startswith("HTTP/") else "no answer"
        with self.lock:
            self.abuse.oversized_sent += 1
            if status == "413":
                self.abuse.oversized_413 += 1
            else:
                self.abuse.oversized_other[status] = self.abuse.oversized_other.get(status, 0) + 1

    def oversized(self) -> None:
        paths = [
            "/v1/photos/upload-url",
            "/v1/storage/events",
            "/api/images/upload",
            "/v1/me/consents/x",
        ]
        while not self.stop.wait(5):
            threads = [threading.Thread(target=self.oversized_one, args=(p,)) for p in paths]
            for t in threads:
                t.start()
            for t in threads:
                t.join()

    def slowloris(self) -> None:
        socks: dict[socket.socket, float] = {}
        while not self.stop.is_set():
            while len(socks) < self.args.slow_clients:
                try:
                    s = socket.create_connection(("127.0.0.1", self.server.port), timeout=2)
                    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
                    s.setblocking(False)
                    socks[s] = time.monotonic()
                    with self.lock:
                        self.abuse.slow_opened += 1
                except OSError:
                    break
            for s, opened in list(socks.items()):
                try:
                    s.send(b"X")
                    with contextlib.suppress(BlockingIOError):
                        if s.recv(1, socket.MSG_PEEK) == b"":
                            raise ConnectionResetError
                except OSError:
                    s.close()
                    del socks[s]
                    with self.lock:
                        self.abuse.slow_cut += 1
                        self.abuse.slow_cut_after_s.append(time.monotonic() - opened)
            self.stop.wait(2)
        for s in socks:
            s.close()

    # --- faults and measurements -------------------------------------------------------------

    def faults(self) -> None:
        duration = self.args.seconds
        if self.stop.wait(duration * 0.3):
            return
        self.note("database: immediate stop")
        self.server.stop_database()
        self.stop.wait(5)
        self.server.start_database()
        self.note("database: started again")
        if self.stop.wait(duration * 0.3):
            return
        self.note("service: SIGKILL")
        self.server.kill()
        self.server.start()
        self.note("service: up again")

    def sample_rss(self) -> None:
        while not self.stop.is_set():
            with contextlib.suppress(psutil.Error, AssertionError):
                rss = sum(p.memory_info().rss for p in self.server.processes())
                self.peak_rss = max(self.peak_rss, rss)
            time.sleep(0.25)

    # --- the run ------------------------------------------------------------------------------

    def drain(self) -> None:
        """Wait for every accepted upload to end; what never ends is lost."""
        self.note(
            f"drain: waiting for {len(self.accepted_photos)} photos and "
            f"{len(self.accepted_selfies)} selfies"
        )
        deadline = time.monotonic() + self.args.drain_seconds
        photos = dict(self.accepted_photos)
        selfies = dict(self.accepted_selfies)
        with httpx.Client(base_url=self.server.base, timeout=30) as client:
            while (photos or selfies) and time.monotonic() < deadline:
                for photo_id, token in list(photos.items()):
                    r = client.get(
                        f"/v1/photos/{photo_id}", headers={"Authorization": f"Bearer {token}"}
                    )
                    if r.status_code != 200:
                        continue
                    view = r.json()
                    steps = view.get("steps") or {}
                    if view["status"] == "rejected" or any(
                        s["status"] == "failed" for s in steps.values()
                    ):
                        self.photos.failed.append(f"{photo_id}: {view}")
                        del photos[photo_id]
                    elif steps and all(s["status"] == "done" for s in steps.values()):
                        self.photos.processed += 1
                        del photos[photo_id]
                for selfie_id, token in list(selfies.items()):
                    r = client.get("/v1/me/selfie", headers={"Authorization": f"Bearer {token}"})
                    if r.status_code != 200:
                        continue
                    face = r.json()["face"]["status"]
                    if face == "indexed":
                        self.selfies.processed += 1
                        del selfies[selfie_id]
                    elif face not in ("processing", "waiting"):
                        self.selfies.failed.append(f"{selfie_id}: {face}")
                        del selfies[selfie_id]
                time.sleep(1)
        # What never finished: lost if the service never took it as uploaded (no steps at
        # all), else still unfinished when the drain gave up (processing could not keep up).
        with httpx.Client(base_url=self.server.base, timeout=30) as client:
            for photo_id, token in photos.items():
                r = client.get(
                    f"/v1/photos/{photo_id}", headers={"Authorization": f"Bearer {token}"}
                )
                steps = r.json().get("steps") if r.status_code == 200 else None
                (self.photos.unfinished if steps else self.photos.lost).append(photo_id)
        self.selfies.lost = sorted(selfies)

    def run(self) -> dict[str, Any]:
        self.server.start()
        photographers = [
            self.server.token(aud="media", role="photographer")
            for _ in range(self.args.photographers)
        ]
        attendee_tokens = [
            self.server.token(aud="media", role="user") for _ in range(self.args.selfies)
        ]
        self.idle_rss = sum(p.memory_info().rss for p in self.server.processes())
        self.t0 = time.monotonic()
        threads = [
            threading.Thread(target=self.photographer, args=(t, str(uuid.uuid4())), daemon=True)
            for t in photographers
        ]
        half = len(attendee_tokens) // 2
        threads += [
            threading.Thread(target=self.attendee, args=(chunk,), daemon=True)
            for chunk in (attendee_tokens[:half], attendee_tokens[half:])
            if chunk
        ]
        threads += [
            threading.Thread(target=fn, daemon=True)
            for fn in (self.oversized, self.slowloris, self.faults, self.sample_rss)
        ]
        for t in threads:
            t.start()
        self.note(
            f"load: {len(photographers)} photographers, {len(attendee_tokens)} attendees, "
            f"{self.args.slow_clients} slow sockets, oversized bodies every 5 s"
        )
        self.stop.wait(self.args.seconds)
        self.stop.set()
        for t in threads:
            t.join(timeout=320)
        sampler = threading.Thread(target=self.sample_rss, daemon=True)
        self.stop.clear()
        sampler.start()
        self.drain()
        self.stop.set()
        sampler.join()
        return self.report()

    def report(self) -> dict[str, Any]:
        lost = len(self.photos.lost) + len(self.selfies.lost)
        unfinished = len(self.photos.unfinished)
        refused = sum(
            n
            for code, n in self.upload_url_errors.items()
            if code.isdigit() and 400 <= int(code) < 500 and code != "429"
        )
        failed = len(self.photos.failed) + len(self.selfies.failed)
        peak_mb = self.peak_rss / 2**20
        return {
            "machine": {"cpus": psutil.cpu_count(), "python": platform.python_version()},
            "seconds": self.args.seconds,
            "photos": asdict(self.photos),
            "selfies": asdict(self.selfies),
            "abuse": {
                **asdict(self.abuse),
                "slow_cut_after_s": {
                    "p50": round(pct(self.abuse.slow_cut_after_s, 50), 1),
                    "max": round(max(self.abuse.slow_cut_after_s, default=0), 1),
                },
            },
            "upload_url": {
                "answered": len(self.latencies),
                "p50_ms": round(pct(self.latencies, 50), 1),
                "p99_ms": round(pct(self.latencies, 99), 1),
                "errors": self.upload_url_errors,
            },
            "rss": {
                "idle_mb": round(self.idle_rss / 2**20),
                "peak_mb": round(peak_mb),
                "budget_mb": self.args.rss_budget_mb,
            },
            "events": self.events,
            "verdict": {
                "lost": lost,
                "unfinished": unfinished,
                "failed": failed,
                "over_budget": peak_mb > self.args.rss_budget_mb,
                # A well-behaved client is never refused for good (4xx other than 429): that
                # would be a broken service, or a soak that measures nothing.
                "refused": refused,
                "ok": lost == 0
                and unfinished == 0
                and failed == 0
                and refused == 0
                and self.photos.accepted > 0
                and self.selfies.accepted > 0
                and peak_mb <= self.args.rss_budget_mb,
            },
        }


def render(r: dict[str, Any]) -> str:
    p, s, a, u, m = r["photos"], r["selfies"], r["abuse"], r["upload_url"], r["rss"]
    lines = [
        f"soak: {r['seconds']} s on {r['machine']['cpus']} cores "
        "(DB stopped 5 s at 30 %, SIGKILL at 60 %, oversized + slow clients throughout)",
        f"  photos  attempted {p['attempted']:5}  accepted {p['accepted']:5}  "
        f"processed {p['processed']:5}  lost {len(p['lost'])}  failed {len(p['failed'])}  "
        f"unfinished {len(p['unfinished'])}  abandoned by clients {p['abandoned']}",
        f"  selfies attempted {s['attempted']:5}  accepted {s['accepted']:5}  "
        f"processed {s['processed']:5}  lost {len(s['lost'])}  failed {len(s['failed'])}  "
        f"abandoned by clients {s['abandoned']}",
        f"  upload-url: {u['answered']} answered, p50 {u['p50_ms']} ms, p99 {u['p99_ms']} ms; "
        f"errors {u['errors']}",
        f"  oversized bodies: {a['oversized_sent']} sent, {a['oversized_413']} answered 413, "
        f"other {a['oversized_other']}",
        f"  slow sockets: {a['slow_opened']} opened, {a['slow_cut']} cut by the server "
        f"(median after {a['slow_cut_after_s']['p50']} s)",
        f"  peak RSS of the service: {m['peak_mb']} MB (idle {m['idle_mb']} MB, "
        f"budget {m['budget_mb']} MB)",
        f"  verdict: {'OK' if r['verdict']['ok'] else 'FAILED'} {r['verdict']}",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=300)
    parser.add_argument("--photographers", type=int, default=4)
    parser.add_argument("--selfies", type=int, default=40, help="attendees, one selfie each")
    parser.add_argument("--slow-clients", type=int, default=200)
    # 4 photographers every 3 s: ~1.3 photos/s, what 2 cores process while serving the rest
    # (a faster stream only measures the backlog, not what is lost).
    parser.add_argument("--pause", type=float, default=3.0, help="seconds between uploads")
    parser.add_argument("--drain-seconds", type=float, default=300)
    parser.add_argument("--rss-budget-mb", type=int, default=RSS_BUDGET_MB)
    parser.add_argument("--keep", action="store_true", help="keep the data dir and the log")
    args = parser.parse_args()
    soak = Soak(args)
    try:
        report = soak.run()
    finally:
        soak.stop.set()
        soak.server.stop(keep=args.keep)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(render(report))
    return 0 if report["verdict"]["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark of the Images server's GET path, with thumbor 7 measured in the same run.

    .venv/bin/python bench/images_get.py            # ~85 s on 2 cores
    .venv/bin/python bench/images_get.py --quick    # ~30 s
    .venv/bin/python bench/images_get.py --no-peer  # Mediaplane only

What it does (bench/README.md has the details and the figures):

1. Starts `mediaplane serve` in a fresh data dir (embedded PostgreSQL, local objects).
2. Memory, on the fresh process: peak RSS while a ~42 MiB noise PNG is uploaded (body streamed
   from disk, RSS sampled every 20 ms), then while its `profile` is rendered.
3. Uploads rounds × 2 × N distinct objects through the real flow (dev token →
   `POST /api/images/upload` → signed multipart POST). The photos are the test fixtures (faces,
   EXIF orientation) plus a generated 12 MP JPEG, in one fixed order, so both servers see the
   same mix.
4. Cold `profile` GETs, the first GET of each object (decode + 240×240 crop + cache write):
   after an unmeasured warm-up, N objects at concurrency 1 and N others at concurrency 4, in
   each of the rounds. The median round is reported.
5. Cached `profile` GETs at concurrency 1, 8 and 32 for a fixed time, `If-None-Match`
   revalidations (304), and cached `original` GETs.
6. thumbor 7 (own venv under /tmp, file loader, file result storage, unsafe URLs
   `/unsafe/240x240/PATH` = centre crop) serving the same photos: cold and cached figures and
   the Mediaplane/thumbor ratios. Each server runs alone: Mediaplane is stopped before thumbor
   starts.

Load generator: this process, on uvloop, one keep-alive HTTP/1.1 connection per worker on raw
asyncio streams (`RawConnection`). httpx's AsyncClient was tried first: it spent ~1 ms of CPU per
request and stalled at 32 connections, so it measured itself. Uploads and checks use httpx. The
client shares the 2 cores with the server, so its CPU use is printed next to each figure, and so
is the CPU used by other processes on the machine (a busy machine halves the figures).
Results: a table on stdout and `bench/results/images_get.json`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import hashlib
import itertools
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
import pyvips
from _common import free_port, log, pct

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
RESULTS = ROOT / "bench" / "results" / "images_get.json"
THUMBOR_VENV = Path(tempfile.gettempdir()) / "mediaplane-bench-thumbor-venv"
BIG_PNG_SIZE = (4000, 3500)  # 14 MP of RGB noise: ~42 MB, under 50 MiB and 50 MP


# --- small utilities ----------------------------------------------------------------------------


def become_subreaper() -> None:
    """Orphans of our servers (thumbor's forked workers, the embedded postmaster) are re-parented
    to this process instead of PID 1, so we can see and reap them."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER


def reap_zombies() -> None:
    with contextlib.suppress(ChildProcessError):
        while True:
            pid, _ = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                break


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with code {proc.returncode} before answering")
        try:
            r = httpx.get(url, timeout=2)
            if r.status_code == 200:
                return
            last = f"HTTP {r.status_code}"
        except httpx.HTTPError as exc:
            last = type(exc).__name__
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer 200 within {timeout:.0f} s (last: {last})")


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def stop_process_tree(
    proc: subprocess.Popen[bytes], extra: list[psutil.Process], grace: float
) -> None:
    """SIGTERM the server (and its own descendants or `extra` left alive), wait, then SIGKILL."""
    if proc.poll() is None:
        with contextlib.suppress(psutil.Error):
            descendants = psutil.Process(proc.pid).children(recursive=True)
            extra = [*extra, *descendants]
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            log(f"pid {proc.pid} ignored SIGTERM for {grace:.0f} s: SIGKILL")
            proc.kill()
            proc.wait()
    alive = [p for p in extra if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    for p in alive:
        with contextlib.suppress(psutil.Error):
            p.terminate()
    _, still = psutil.wait_procs(alive, timeout=grace)
    for p in still:
        with contextlib.suppress(psutil.Error):
            p.kill()
    reap_zombies()


# --- the photos -------------------------------------------------------------------------------


def make_12mp_jpeg(path: Path) -> None:
    """A photo-like 4000×3000 JPEG (gradients, a zone plate, mild noise): ~12 MP, a few MB."""
    w, h = 4000, 3000
    xy = pyvips.Image.xyz(w, h)
    x, y = xy[0], xy[1]
    zone = pyvips.Image.zone(w, h).linear(80, 128)
    noise = pyvips.Image.gaussnoise(w, h, sigma=10, mean=0)
    r = x.linear(200 / w, 20) + noise
    g = (y.linear(180 / h, 40) + zone) / 2 + noise
    b = ((x + y).linear(160 / (w + h), 60) + zone) / 2
    img = r.bandjoin([g, b]).cast("uchar", shift=False).copy(interpretation="srgb")
    img.jpegsave(str(path), Q=90)


def make_noise_png(path: Path, size: tuple[int, int]) -> None:
    """Random RGB noise: incompressible, so the PNG is about width×height×3 bytes."""
    w, h = size
    img = pyvips.Image.new_from_memory(os.urandom(w * h * 3), w, h, 3, "uchar")
    img.copy(interpretation="srgb").pngsave(str(path), compression=1, filter="none")


def source_photos(work: Path) -> list[Path]:
    """The mix, in a fixed order: the generated 12 MP JPEG first (so every pass holds at least
    one), then the face photos, then the 18 EXIF-orientation photos."""
    big = work / "generated-12mp.jpg"
    make_12mp_jpeg(big)
    faces = sorted((FIXTURES / "faces").glob("*.jpg"))
    exif = sorted((FIXTURES / "exif-orientation").glob("*.jpg"))
    if not faces or not exif:
        raise SystemExit(f"fixtures missing under {FIXTURES}")
    return [big, *faces, *exif]


def take(sources: list[Path], n: int) -> list[Path]:
    return list(itertools.islice(itertools.cycle(sources), n))


# --- the load generator --------------------------------------------------------------------


@dataclass
class Run:
    name: str
    concurrency: int
    requests: int = 0
    errors: int = 0
    seconds: float = 0.0
    rps: float = 0.0
    p50_ms: float = float("nan")
    p99_ms: float = float("nan")
    max_ms: float = float("nan")
    mean_bytes: float = 0.0
    client_cpu_pct: float = 0.0  # of one core, this process (the load generator)
    server_cpu_pct: float = 0.0  # of one core, the server processes
    foreign_cpu_pct: float = 0.0  # of one core, other long-lived processes on the machine
    unattributed_cpu_pct: float = 0.0  # short-lived processes (per-request DB backends), kernel
    server_cpu_ms_per_req: float = 0.0
    first_error: str | None = None
    latencies_ms: list[float] = field(default_factory=list, repr=False)

    def summary(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("latencies_ms")
        return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in out.items()}


def busy_seconds() -> float:
    """CPU seconds the whole machine spent not idle, since boot."""
    t = psutil.cpu_times()
    return sum(t) - t.idle - getattr(t, "iowait", 0.0)


def others_cpu(exclude: set[int]) -> dict[int, float]:
    """CPU seconds of every process not in `exclude` (other people's work on this machine)."""
    out: dict[int, float] = {}
    for p in psutil.process_iter(["cpu_times"]):
        t = p.info["cpu_times"]
        if p.pid not in exclude and t is not None:
            out[p.pid] = t.user + t.system
    return out


class CpuMeter:
    """CPU seconds used over a window by this process (the client), by the server processes, and
    by other processes that lived through the window (foreign load: other jobs on the machine)."""

    def __init__(self, server_procs: Callable[[], list[psutil.Process]]) -> None:
        self.server_procs = server_procs
        self.me = psutil.Process()

    @staticmethod
    def _cpu(procs: list[psutil.Process]) -> dict[int, float]:
        out: dict[int, float] = {}
        for p in procs:
            with contextlib.suppress(psutil.Error):
                t = p.cpu_times()
                out[p.pid] = t.user + t.system
        return out

    def _ours(self) -> set[int]:
        ours = {self.me.pid, *(p.pid for p in self.procs)}
        with contextlib.suppress(psutil.Error):
            ours |= {p.pid for p in self.me.children(recursive=True)}
        return ours

    def __enter__(self) -> CpuMeter:
        self.procs = self.server_procs()
        self.s0 = self._cpu(self.procs)
        self.o0 = others_cpu(self._ours())
        self.b0 = busy_seconds()
        t = self.me.cpu_times()
        self.c0 = t.user + t.system
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.t0
        t = self.me.cpu_times()
        self.client = t.user + t.system - self.c0
        s1 = self._cpu(self.procs)
        self.server = sum(s1[pid] - self.s0.get(pid, s1[pid]) for pid in s1)
        o1 = others_cpu(self._ours())
        self.foreign = sum(o1[pid] - self.o0[pid] for pid in o1 if pid in self.o0)
        # Busy time nobody above accounts for: processes that started and ended inside the
        # window (e.g. PostgreSQL backends of connections opened and closed per request), kernel.
        self.unattributed = max(
            0.0, busy_seconds() - self.b0 - self.client - self.server - self.foreign
        )


class RawConnection:
    """One keep-alive HTTP/1.1 connection, GET only, on asyncio streams.

    httpx costs ~1 ms of client CPU per request and its pool stalls at 32 connections, so the
    load generator, not the server, set the cached figures. This client costs a fraction of that;
    it understands Content-Length, chunked bodies, 304s and `Connection: close`.
    """

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(Exception):
                await self.writer.wait_closed()
        self.reader = self.writer = None

    async def get(self, target: str, headers: dict[str, str] | None) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        self.writer.write(
            f"GET {target} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n{extra}\r\n".encode()
        )
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            status = int(lines[0].split(" ", 2)[1])
            fields = {}
            for line in lines[1:]:
                if line:
                    k, _, v = line.partition(":")
                    fields[k.strip().lower()] = v.strip()
            if status in (204, 304) or status < 200:
                body = b""
            elif "content-length" in fields:
                body = await self.reader.readexactly(int(fields["content-length"]))
            elif fields.get("transfer-encoding", "").lower() == "chunked":
                parts = []
                while True:
                    size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                    if size == 0:
                        while (await self.reader.readuntil(b"\r\n")) != b"\r\n":
                            pass
                        break
                    parts.append((await self.reader.readexactly(size + 2))[:-2])
                body = b"".join(parts)
            else:
                body = await self.reader.read()
                fields["connection"] = "close"
        except BaseException:
            await self.close()
            raise
        if fields.get("connection", "").lower() == "close":
            await self.close()
        return status, body


async def load(
    name: str,
    urls: list[str],
    *,
    concurrency: int,
    server_procs: Callable[[], list[psutil.Process]],
    expect: int = 200,
    duration: float | None = None,
    headers: dict[str, dict[str, str]] | None = None,
    warmup: float = 0.0,
    fresh_connections: bool = False,
) -> Run:
    """GET `urls` with `concurrency` workers, one keep-alive connection each.

    duration=None: each URL exactly once (cold passes). Otherwise round-robin over the URLs until
    the time is up (after `warmup` seconds whose requests are not counted).

    fresh_connections: one connection per request (`Connection: close`). Used for the cold
    passes: thumbor's forked workers share one listening socket, and kept-alive connections
    opened at once all land on whichever worker woke first (measured: 4 connections on one
    worker, 99% CPU of 200%), while a worker busy rendering accepts nothing new. Loopback
    connects cost ~0.1 ms against renders of 10+ ms.
    """
    run = Run(name=name, concurrency=concurrency)
    first = httpx.URL(urls[0])
    host, port = str(first.host), int(first.port or 80)
    targets = {u: httpx.URL(u).raw_path.decode() for u in urls}
    total_bytes = 0
    conns: list[RawConnection] = []

    async def worker(source: Iterator[str], deadline: float | None, record: bool) -> None:
        nonlocal total_bytes
        conn = RawConnection(host, port)
        conns.append(conn)
        while deadline is None or time.perf_counter() < deadline:
            try:
                url = next(source)
            except StopIteration:
                return
            hdrs = headers.get(url) if headers else None
            if fresh_connections:
                hdrs = {**(hdrs or {}), "Connection": "close"}
            t0 = time.perf_counter()
            try:
                status, body = await conn.get(targets[url], hdrs)
                if fresh_connections:
                    await conn.close()
                ok = status == expect
                size = len(body)
                err = None if ok else f"HTTP {status} {body[:200]!r}"
            except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                ok, size, err = False, 0, f"{type(exc).__name__}: {exc}"
            dt = (time.perf_counter() - t0) * 1000
            if not record:
                continue
            run.requests += 1
            if ok:
                run.latencies_ms.append(dt)
                total_bytes += size
            else:
                run.errors += 1
                run.first_error = run.first_error or err

    try:
        if duration is not None and warmup > 0:
            src = itertools.cycle(urls)
            end = time.perf_counter() + warmup
            await asyncio.gather(*(worker(src, end, False) for _ in range(concurrency)))
            for conn in conns:
                await conn.close()
        source: Iterator[str] = iter(urls) if duration is None else itertools.cycle(urls)
        with CpuMeter(server_procs) as cpu:
            deadline = None if duration is None else time.perf_counter() + duration
            await asyncio.gather(*(worker(source, deadline, True) for _ in range(concurrency)))
    finally:
        for conn in conns:
            await conn.close()
    run.seconds = cpu.wall
    ok = len(run.latencies_ms)
    run.rps = ok / cpu.wall if cpu.wall else 0.0
    run.p50_ms, run.p99_ms = pct(run.latencies_ms, 50), pct(run.latencies_ms, 99)
    run.max_ms = max(run.latencies_ms, default=float("nan"))
    run.mean_bytes = total_bytes / ok if ok else 0.0
    run.client_cpu_pct = 100 * cpu.client / cpu.wall
    run.server_cpu_pct = 100 * cpu.server / cpu.wall
    run.foreign_cpu_pct = 100 * cpu.foreign / cpu.wall
    run.unattributed_cpu_pct = 100 * cpu.unattributed / cpu.wall
    run.server_cpu_ms_per_req = 1000 * cpu.server / ok if ok else float("nan")
    note = f", {run.errors} errors (first: {run.first_error})" if run.errors else ""
    log(
        f"  {name} c={concurrency}: {run.rps:.1f} req/s, p50 {run.p50_ms:.1f} ms, "
        f"p99 {run.p99_ms:.1f} ms, server CPU {run.server_cpu_pct:.0f}%, "
        f"client CPU {run.client_cpu_pct:.0f}%, other processes {run.foreign_cpu_pct:.0f}%, "
        f"unattributed {run.unattributed_cpu_pct:.0f}%{note}"
    )
    return run


async def fetch_etags(urls: list[str]) -> dict[str, str]:
    async with httpx.AsyncClient(timeout=60) as client:
        out = {}
        for url in urls:
            r = await client.get(url)
            r.raise_for_status()
            out[url] = r.headers["etag"]
        return out


def check_profile(data: bytes, who: str) -> str:
    img = pyvips.Image.new_from_buffer(data, "")
    loader = str(img.get("vips-loader"))
    if (img.width, img.height) != (240, 240) or not loader.startswith("jpeg"):
        raise RuntimeError(
            f"{who} profile is {img.width}×{img.height} {loader}, not a 240×240 JPEG"
        )
    return f"{img.width}×{img.height} {loader.removesuffix('load_buffer')}"


# --- Mediaplane --------------------------------------------------------------------------------


class Mediaplane:
    def __init__(self, work: Path) -> None:
        self.work = work
        self.data = work / "mediaplane-data"
        self.data.mkdir(mode=0o755)
        self.data.chmod(0o755)
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = work / "mediaplane.log"
        exe = Path(sys.executable).with_name("mediaplane")
        self.cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "mediaplane.cli"]
        self.env = {
            **os.environ,
            "MEDIAPLANE_DATA_DIR": str(self.data),
            "MEDIAPLANE_PORT": str(self.port),
            "PUBLIC_URL": self.base,
            "LOG_LEVEL": "warning",
            "IMAGES_UPLOAD_RATE_LIMIT": "100000",
            "IMAGES_MAX_BYTES": str(50 * 1024 * 1024),
        }
        for var in (
            "DATABASE_URL",
            "STORAGE_URL",
            "IMAGES_HOST",
            "JWT_JWKS_URL",
            "JWT_PUBLIC_KEY",
            "JWT_HS256_SECRET",
        ):
            self.env.pop(var, None)
        self.proc: subprocess.Popen[bytes] | None = None
        self.start_seconds = 0.0

    def start(self) -> None:
        log(f"starting mediaplane serve on {self.base} (data dir {self.data})")
        t0 = time.perf_counter()
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [*self.cmd, "serve"],
            env=self.env,
            cwd=self.work,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        try:
            wait_http(f"{self.base}/healthz", self.proc, timeout=90)
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}\n--- {self.log_path} ---\n{tail(self.log_path)}") from None
        self.start_seconds = time.perf_counter() - t0
        log(f"  up in {self.start_seconds:.1f} s")

    def postgres(self) -> list[psutil.Process]:
        """The embedded postmaster of our data dir and its backends."""
        key = str(self.data)
        for p in psutil.process_iter(["cmdline"]):
            cmd = p.info["cmdline"] or []
            if (
                cmd
                and os.path.basename(cmd[0]).startswith("postgres")
                and any(key in a for a in cmd)
            ):
                with contextlib.suppress(psutil.Error):
                    return [p, *p.children(recursive=True)]
        return []

    def main_process(self) -> psutil.Process:
        assert self.proc is not None
        return psutil.Process(self.proc.pid)

    def processes(self) -> list[psutil.Process]:
        """The whole server: the Python process, anything it spawned, and its PostgreSQL."""
        main = self.main_process()
        procs = [main, *main.children(recursive=True)]
        seen = {p.pid for p in procs}
        return procs + [p for p in self.postgres() if p.pid not in seen]

    def stop(self) -> None:
        if self.proc is None:
            return
        log("stopping mediaplane (SIGTERM)")
        pg = self.postgres()
        stop_process_tree(self.proc, pg, grace=30)
        self._log.close()

    def token(self) -> str:
        out = subprocess.run(
            [*self.cmd, "token", "--aud", "media", "--role", "user", "--sub", str(uuid.uuid4())],
            env=self.env,
            cwd=self.work,
            capture_output=True,
            text=True,
            timeout=60,
        )
        if out.returncode != 0:
            raise RuntimeError(f"mediaplane token failed: {out.stderr.strip()}")
        return out.stdout.strip().splitlines()[-1]

    async def upload(self, client: httpx.AsyncClient, token: str, path: Path) -> tuple[str, float]:
        """Sign + multipart POST with the body streamed from disk; → (object path, seconds)."""
        t0 = time.perf_counter()
        r = await client.post(
            f"{self.base}/api/images/upload", headers={"Authorization": f"Bearer {token}"}
        )
        if r.status_code != 200:
            raise RuntimeError(f"signing failed: HTTP {r.status_code} {r.text[:300]}")
        signed = r.json()["result"]["upload_url"]
        if not signed.startswith(self.base + "/"):
            raise RuntimeError(f"signed URL {signed} is not on {self.base}")
        boundary = uuid.uuid4().hex
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
            f'filename="{path.name}"\r\nContent-Type: application/octet-stream\r\n\r\n'
        ).encode()
        foot = f"\r\n--{boundary}--\r\n".encode()

        async def body() -> AsyncIterator[bytes]:
            yield head
            with path.open("rb") as f:
                while chunk := f.read(256 * 1024):
                    yield chunk
            yield foot

        length = len(head) + path.stat().st_size + len(foot)
        r = await client.post(
            signed,
            content=body(),
            headers={
                "Content-Type": f"multipart/form-data; boundary={boundary}",
                "Content-Length": str(length),
            },
        )
        if r.status_code != 200:
            raise RuntimeError(f"upload of {path.name} failed: HTTP {r.status_code} {r.text[:300]}")
        url = r.json()["result"]["upload_url"]
        prefix = "authgearimages:///"
        if not url.startswith(prefix):
            raise RuntimeError(f"unexpected upload result {url!r}")
        return f"{self.base}/_images/{url[len(prefix) :]}", time.perf_counter() - t0

    async def upload_all(self, paths: list[Path]) -> tuple[list[str], list[float]]:
        token = self.token()
        async with httpx.AsyncClient(timeout=120) as client:
            done = [await self.upload(client, token, p) for p in paths]
        return [d[0] for d in done], [d[1] for d in done]


# --- thumbor -------------------------------------------------------------------------------------

# Mediaplane's profile JPEG quality (imaging/profile.py JPEG_QUALITY), so both encode alike.
THUMBOR_QUALITY = 85
THUMBOR_CONF = """\
LOADER = 'thumbor.loaders.file_loader'
FILE_LOADER_ROOT_PATH = {root!r}
STORAGE = 'thumbor.storages.no_storage'
RESULT_STORAGE = 'thumbor.result_storages.file_storage'
RESULT_STORAGE_FILE_STORAGE_ROOT_PATH = {results!r}
RESULT_STORAGE_STORES_UNSAFE = True
ALLOW_UNSAFE_URL = True
RESPECT_ORIENTATION = True
AUTO_WEBP = False
ENABLE_ETAGS = True
QUALITY = {quality}
"""


def ensure_thumbor(timeout: float = 300) -> tuple[Path | None, str]:
    """A venv with thumbor under /tmp (created once, then reused); → (thumbor binary, note)."""
    exe = THUMBOR_VENV / "bin" / "thumbor"

    def version() -> str | None:
        if not exe.exists():
            return None
        out = subprocess.run([str(exe), "--version"], capture_output=True, text=True, timeout=60)
        return out.stdout.strip() or out.stderr.strip() if out.returncode == 0 else None

    found = version()
    if found:
        return exe, f"thumbor {found} (reused venv {THUMBOR_VENV})"
    log(f"installing thumbor into {THUMBOR_VENV} (pip)")
    shutil.rmtree(THUMBOR_VENV, ignore_errors=True)
    try:
        subprocess.run(
            [sys.executable, "-m", "venv", str(THUMBOR_VENV)],
            check=True,
            capture_output=True,
            timeout=120,
        )
        out = subprocess.run(
            [str(THUMBOR_VENV / "bin" / "pip"), "install", "-q", "thumbor>=7,<8"],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except (subprocess.SubprocessError, OSError) as exc:
        return None, f"could not create the thumbor venv: {exc}"
    if out.returncode != 0:
        err = [ln for ln in out.stderr.splitlines() if "ignored" not in ln][-3:]
        return None, "pip install thumbor failed: " + " | ".join(err)
    found = version()
    if not found:
        return None, "thumbor installed but `thumbor --version` fails"
    return exe, f"thumbor {found} (new venv {THUMBOR_VENV})"


class Thumbor:
    def __init__(self, work: Path, exe: Path, processes: int) -> None:
        self.exe = exe
        self.processes = processes
        self.root = work / "thumbor-src"
        self.results = work / "thumbor-results"
        self.root.mkdir()
        self.results.mkdir()
        self.conf = work / "thumbor.conf"
        self.conf.write_text(
            THUMBOR_CONF.format(
                root=str(self.root), results=str(self.results), quality=THUMBOR_QUALITY
            )
        )
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = work / "thumbor.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def add(self, prefix: str, paths: list[Path]) -> list[str]:
        """Copy the photos under distinct names (distinct URLs = cold result-storage misses)."""
        (self.root / prefix).mkdir()
        urls = []
        for i, p in enumerate(paths):
            name = f"{prefix}/{i:03d}-{p.name}"
            shutil.copyfile(p, self.root / name)
            urls.append(f"{self.base}/unsafe/240x240/{name}")
        return urls

    def start(self) -> None:
        log(f"starting thumbor on {self.base} ({self.processes} processes)")
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [
                str(self.exe),
                "-p",
                str(self.port),
                "-i",
                "127.0.0.1",
                "-c",
                str(self.conf),
                "-l",
                "warning",
                "--processes",
                str(self.processes),
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        try:
            wait_http(f"{self.base}/healthcheck", self.proc, timeout=60)
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}\n--- {self.log_path} ---\n{tail(self.log_path)}") from None
        time.sleep(0.5)  # let every forked worker reach accept()

    def processes_(self) -> list[psutil.Process]:
        assert self.proc is not None
        main = psutil.Process(self.proc.pid)
        return [main, *main.children(recursive=True)]

    def stop(self) -> None:
        if self.proc is None:
            return
        log("stopping thumbor (SIGTERM)")
        # tornado's fork_processes parent dies on SIGTERM without stopping its workers:
        # collect them first, then stop them by pid.
        workers: list[psutil.Process] = []
        with contextlib.suppress(psutil.Error):
            workers = psutil.Process(self.proc.pid).children(recursive=True)
        stop_process_tree(self.proc, workers, grace=10)
        self._log.close()


# --- memory while uploading -----------------------------------------------------------------


class RssSampler(threading.Thread):
    """Samples the RSS of the server's main process and of its whole tree every `interval`."""

    def __init__(self, procs: Callable[[], list[psutil.Process]], interval: float = 0.02) -> None:
        super().__init__(daemon=True)
        self.procs = procs()
        self.interval = interval
        self.main_samples: list[int] = []
        self.tree_samples: list[int] = []
        self._halt = threading.Event()

    def sample(self) -> tuple[int, int]:
        sizes = []
        for p in self.procs:
            try:
                sizes.append(p.memory_info().rss)
            except psutil.Error:
                sizes.append(0)
        return sizes[0], sum(sizes)

    def run(self) -> None:
        while not self._halt.is_set():
            main, tree = self.sample()
            self.main_samples.append(main)
            self.tree_samples.append(tree)
            self._halt.wait(self.interval)

    def stop(self) -> None:
        self._halt.set()
        self.join()


def baseline(sampler_cls: Callable[[], RssSampler], seconds: float = 0.5) -> tuple[int, int]:
    s = sampler_cls()
    s.start()
    time.sleep(seconds)
    s.stop()
    return int(statistics.median(s.main_samples)), int(statistics.median(s.tree_samples))


async def memory_during(
    mp: Mediaplane, label: str, action: Callable[[], Any], file_bytes: int
) -> dict[str, Any]:
    make = lambda: RssSampler(mp.processes)  # noqa: E731
    base_main, base_tree = baseline(make)
    sampler = make()
    sampler.start()
    t0 = time.perf_counter()
    try:
        result = await action()
    finally:
        seconds = time.perf_counter() - t0
        sampler.stop()
    peak_main, peak_tree = max(sampler.main_samples), max(sampler.tree_samples)
    out = {
        "what": label,
        "file_bytes": file_bytes,
        "seconds": round(seconds, 3),
        "samples": len(sampler.main_samples),
        "main_baseline_rss": base_main,
        "main_peak_rss": peak_main,
        "main_delta": peak_main - base_main,
        "main_delta_over_file": round((peak_main - base_main) / file_bytes, 4),
        "tree_processes": len(sampler.procs),
        "tree_baseline_rss": base_tree,
        "tree_peak_rss": peak_tree,
        "tree_delta": peak_tree - base_tree,
        "tree_delta_over_file": round((peak_tree - base_tree) / file_bytes, 4),
    }
    log(
        f"  {label}: {seconds:.2f} s, {len(sampler.main_samples)} samples, tree RSS "
        f"{base_tree / 2**20:.0f} → {peak_tree / 2**20:.0f} MiB "
        f"(Δ {(peak_tree - base_tree) / 2**20:.1f} MiB = "
        f"{out['tree_delta_over_file']:.2f}× the file)"
    )
    return {"result": result, **out}


# --- the benchmark ------------------------------------------------------------------------------


@dataclass
class Plan:
    n: int
    warm: int
    cold_rounds: int
    cached_seconds: float
    warmup: float
    cached_levels: tuple[int, ...] = (1, 8, 32)
    cold_levels: tuple[int, ...] = (1, 4)


async def bench_server(
    label: str,
    cold_sets: dict[int, list[list[str]]],
    warm_urls: list[str],
    procs: Callable[[], list[psutil.Process]],
    plan: Plan,
) -> dict[str, Any]:
    """A warm-up pass, cold passes (rounds × concurrency levels, each on its own fresh URLs; the
    round with the median rate is reported), then cached and revalidation passes over every URL.

    The warm-up renders its own objects at the highest cold concurrency, unmeasured: the first
    concurrent renders after start ran at ~1 core and 50-65% of the later rate in both servers
    (threads, DB connections and allocator arenas being set up).
    """
    out: dict[str, Any] = {"cold": {}, "cold_rounds_rps": {}, "cached": {}, "revalidate": {}}
    log(f"{label}: cold profile GETs (warm-up, then {plan.cold_rounds} rounds)")
    await load(
        f"{label} warm-up (not counted)",
        warm_urls,
        concurrency=max(cold_sets),
        server_procs=procs,
        fresh_connections=True,
    )
    runs: dict[int, list[Run]] = {c: [] for c in cold_sets}
    for r in range(plan.cold_rounds):
        for c, rounds in cold_sets.items():
            runs[c].append(
                await load(
                    f"{label} cold r{r}",
                    rounds[r],
                    concurrency=c,
                    server_procs=procs,
                    fresh_connections=True,
                )
            )
    for c, done in runs.items():
        out["cold"][c] = sorted(done, key=lambda run: run.rps)[len(done) // 2]
        out["cold_rounds_rps"][str(c)] = [round(run.rps, 1) for run in done]
    every = [u for rounds in cold_sets.values() for urls in rounds for u in urls]
    log(f"{label}: cached profile GETs")
    for c in plan.cached_levels:
        out["cached"][c] = await load(
            f"{label} cached",
            every,
            concurrency=c,
            server_procs=procs,
            duration=plan.cached_seconds,
            warmup=plan.warmup,
        )
    etags = await fetch_etags(every)
    headers = {u: {"If-None-Match": etags[u]} for u in every}
    for c in (8,):
        out["revalidate"][c] = await load(
            f"{label} 304",
            every,
            concurrency=c,
            server_procs=procs,
            expect=304,
            duration=plan.cached_seconds,
            headers=headers,
            warmup=plan.warmup,
        )
    async with httpx.AsyncClient() as client:
        r = await client.get(every[0])
        out["profile_check"] = check_profile(r.content, label)
    return out


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    plan = (
        Plan(n=args.n or 12, warm=8, cold_rounds=args.rounds or 1, cached_seconds=1.5, warmup=0.3)
        if args.quick
        else Plan(
            n=args.n or 40, warm=16, cold_rounds=args.rounds or 3, cached_seconds=5.0, warmup=0.5
        )
    )
    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="mediaplane-bench-"))
    work.chmod(0o755)
    report: dict[str, Any] = {
        "benchmark": "images_get",
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "libvips": ".".join(str(pyvips.version(i)) for i in range(3)),
        },
        "plan": asdict(plan) | {"quick": args.quick},
    }
    report["machine"]["busy_before_pct"] = psutil.cpu_percent(interval=1.0)
    log(f"machine busy {report['machine']['busy_before_pct']:.0f}% in the second before the run")
    mp: Mediaplane | None = None
    th: Thumbor | None = None
    try:
        log(f"work dir {work}; preparing photos")
        sources = source_photos(work)
        cold_photos = {c: take(sources, plan.n) for c in plan.cold_levels}
        report["photos"] = {
            "sources": [p.name for p in sources],
            "per_cold_pass": plan.n,
            "mean_source_bytes": round(
                statistics.mean(p.stat().st_size for p in take(sources, plan.n))
            ),
        }

        # thumbor's venv first, so pip never competes with a measurement.
        thumbor_exe, thumbor_note = (
            (None, "skipped (--no-peer)") if args.no_peer else ensure_thumbor()
        )
        log(thumbor_note)

        # --- Mediaplane ---
        mp = Mediaplane(work)
        mp.start()
        # Memory first, on a fresh process: later passes grow the heap, and memory freed by
        # them would hide the upload's own growth from RSS. One small upload warms the code path.
        log("memory: uploading a ~40 MB PNG")
        png = work / "noise-40mb.png"
        make_noise_png(png, BIG_PNG_SIZE)
        size = png.stat().st_size
        w, h = BIG_PNG_SIZE
        assert w * h < 50_000_000 and size < 50 * 1024 * 1024, (w * h, size)
        token = mp.token()
        async with httpx.AsyncClient(timeout=300) as client:
            warm_obj, _ = await mp.upload(client, token, sources[1])
            (await client.get(f"{warm_obj}/profile")).raise_for_status()
            up = await memory_during(
                mp, "upload 40 MB PNG", lambda: mp.upload(client, token, png), size
            )
            big_url = up.pop("result")[0]
            render = await memory_during(
                mp, "first profile GET of it", lambda: client.get(f"{big_url}/profile"), size
            )
            resp = render.pop("result")
            render["status"] = resp.status_code
            if resp.status_code != 200:
                raise RuntimeError(f"profile of the 40 MB PNG: HTTP {resp.status_code}")
        report["memory"] = {
            "png_pixels": w * h,
            "png_bytes": size,
            "upload": up,
            "profile_render": render,
        }

        log(f"uploading {plan.cold_rounds * sum(map(len, cold_photos.values()))} objects")
        mp_cold_sets: dict[int, list[list[str]]] = {c: [] for c in cold_photos}
        upload_seconds: list[float] = []
        originals: dict[str, Path] = {}
        for _ in range(plan.cold_rounds):
            for c, photos in cold_photos.items():
                urls, secs = await mp.upload_all(photos)
                upload_seconds += secs
                mp_cold_sets[c].append([f"{u}/profile" for u in urls])
                originals.update(zip(urls, photos, strict=True))
        warm_urls, _ = await mp.upload_all(take(sources[1:], plan.warm))
        log(
            f"  {len(upload_seconds)} uploads, mean {statistics.mean(upload_seconds) * 1000:.0f} ms"
        )
        mp_res = await bench_server(
            "mediaplane", mp_cold_sets, [f"{u}/profile" for u in warm_urls], mp.processes, plan
        )
        orig_urls = [f"{u}/original" for u in originals]
        mp_res["original"] = {
            8: await load(
                "mediaplane original",
                orig_urls,
                concurrency=8,
                server_procs=mp.processes,
                duration=plan.cached_seconds,
                warmup=plan.warmup,
            )
        }
        async with httpx.AsyncClient() as client:  # the original comes back byte for byte
            url, path = next(iter(originals.items()))
            r = await client.get(f"{url}/original")
            if hashlib.sha256(r.content).digest() != hashlib.sha256(path.read_bytes()).digest():
                raise RuntimeError(f"{url}/original differs from {path}")

        report["mediaplane"] = {
            "start_seconds": round(mp.start_seconds, 2),
            "upload_mean_ms": round(statistics.mean(upload_seconds) * 1000, 1),
            "profile_check": mp_res["profile_check"],
            "cold_rounds_rps": mp_res["cold_rounds_rps"],
            **{
                kind: {str(c): r.summary() for c, r in mp_res[kind].items()}
                for kind in ("cold", "cached", "revalidate", "original")
            },
        }
        mp.stop()
        mp = None

        # --- thumbor ---
        if thumbor_exe is None:
            report["thumbor"] = {"skipped": thumbor_note}
        else:
            try:
                th = Thumbor(work, thumbor_exe, args.thumbor_processes)
                th_sets = {
                    c: [th.add(f"r{r}c{c}", photos) for r in range(plan.cold_rounds)]
                    for c, photos in cold_photos.items()
                }
                th_warm = th.add("warm", take(sources[1:], plan.warm))
                th.start()
                th_res = await bench_server("thumbor", th_sets, th_warm, th.processes_, plan)
                report["thumbor"] = {
                    "version": thumbor_note,
                    "processes": args.thumbor_processes,
                    "url_style": "/unsafe/240x240/PATH (centre crop, smart off)",
                    "quality": THUMBOR_QUALITY,
                    "profile_check": th_res["profile_check"],
                    "cold_rounds_rps": th_res["cold_rounds_rps"],
                    **{
                        kind: {str(c): r.summary() for c, r in th_res[kind].items()}
                        for kind in ("cold", "cached", "revalidate")
                    },
                }
            except Exception as exc:  # the peer is context: report why and go on
                log(f"thumbor failed: {exc}")
                report["thumbor"] = {"skipped": f"{type(exc).__name__}: {exc}"[:2000]}
            finally:
                if th is not None:
                    th.stop()
                    th = None
    finally:
        if mp is not None:
            mp.stop()
        if th is not None:
            th.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            log(f"kept {work}")
    report["ratios"] = ratios(report)
    report["elapsed_seconds"] = round(time.perf_counter() - started, 1)
    return report


def ratios(report: dict[str, Any]) -> dict[str, float]:
    th = report.get("thumbor", {})
    mp = report.get("mediaplane", {})
    if "skipped" in th or not mp:
        return {}
    out = {}
    for kind in ("cold", "cached", "revalidate"):
        for c, row in mp.get(kind, {}).items():
            peer = th.get(kind, {}).get(c)
            if peer and peer["rps"]:
                out[f"{kind}_c{c}_rps"] = round(row["rps"] / peer["rps"], 3)
    return out


# --- output --------------------------------------------------------------------------------


def render(report: dict[str, Any]) -> str:
    """The results as a plain-text table (also pasted into bench/README.md)."""
    mp, th = report["mediaplane"], report.get("thumbor", {})
    has_peer = "skipped" not in th
    lines = [
        f"Images GET — {report['machine']['cpus']} cores, "
        f"{report['photos']['per_cold_pass']} objects per cold pass (median of "
        f"{report['plan']['cold_rounds']} rounds), cached passes "
        f"{report['plan']['cached_seconds']:g} s"
        + (" (--quick)" if report["plan"]["quick"] else ""),
        "",
    ]
    head = (
        f"{'measure':<14} {'c':>3}  {'server':<10} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'CPU ms/req':>10} {'srv CPU':>8} {'client':>7} {'other':>6}  {'MP/thumbor':>10}"
    )
    lines += [head, "-" * len(head)]
    names = {
        "cold": "profile cold",
        "cached": "profile cached",
        "revalidate": "profile 304",
        "original": "original",
    }
    for kind in ("cold", "cached", "revalidate", "original"):
        for c, row in mp.get(kind, {}).items():
            peer = th.get(kind, {}).get(c) if has_peer else None
            ratio = report["ratios"].get(f"{kind}_c{c}_rps")
            for i, (who, r) in enumerate((("mediaplane", row), ("thumbor", peer))):
                if r is None:
                    continue
                err = f"  {r['errors']} ERRORS: {r['first_error']}" if r["errors"] else ""
                lines.append(
                    f"{names[kind] if i == 0 else '':<14} {c if i == 0 else '':>3}  {who:<10} "
                    f"{r['rps']:>8.1f} {r['p50_ms']:>8.1f} {r['p99_ms']:>8.1f} "
                    f"{r['server_cpu_ms_per_req']:>10.2f} {r['server_cpu_pct']:>7.0f}% "
                    f"{r['client_cpu_pct']:>6.0f}% {r['foreign_cpu_pct']:>5.0f}%  "
                    + (f"{ratio:>9.2f}×" if i == 0 and ratio is not None else "")
                    + err
                )
    lines += [
        "",
        "CPU ms/req: CPU time of the server processes (Python + its PostgreSQL, or all thumbor "
        "workers) per request; srv CPU / client / other: % of one core used by the server / by "
        "the load generator (this process) / by other processes on the machine during the pass.",
    ]
    worst = max(
        (
            r["foreign_cpu_pct"]
            for srv in (mp, th)
            for kind in ("cold", "cached", "revalidate", "original")
            for r in srv.get(kind, {}).values()
        ),
        default=0.0,
    )
    if worst > 10 or report["machine"]["busy_before_pct"] > 10:
        lines.append(
            f"WARNING: the machine was not quiet (other processes: up to {worst:.0f}% of a core "
            f"during a pass, {report['machine']['busy_before_pct']:.0f}% of all cores in the "
            "second before the run): these figures are lower and noisier than on an idle machine."
        )
    if has_peer:
        lines.append(
            f"peer: {th['version']}, {th['processes']} processes, {th['url_style']}, "
            f"JPEG quality {th['quality']}"
        )
    else:
        lines.append(f"thumbor: {th.get('skipped', 'not run')}")

    m = report["memory"]
    lines += [
        "",
        f"Server RSS while a {m['png_pixels'] / 1e6:.0f} MP noise PNG of "
        f"{m['png_bytes'] / 2**20:.1f} MiB is uploaded (body streamed from disk), then rendered "
        f"(sampled every 20 ms):",
        f"{'during':<26} {'process':<30} {'base MiB':>8} {'peak MiB':>8} {'Δ MiB':>7} "
        f"{'Δ/file':>7} {'s':>6}",
    ]
    for key in ("upload", "profile_render"):
        row = m[key]
        for scope, label in (
            ("tree", f"tree ({row['tree_processes']} procs incl. PostgreSQL)"),
            ("main", "mediaplane Python process"),
        ):
            lines.append(
                f"{row['what']:<26} {label:<30} {row[f'{scope}_baseline_rss'] / 2**20:>8.0f} "
                f"{row[f'{scope}_peak_rss'] / 2**20:>8.0f} {row[f'{scope}_delta'] / 2**20:>7.1f} "
                f"{row[f'{scope}_delta_over_file']:>7.2f} {row['seconds']:>6.2f}"
            )
    lines += [
        "",
        f"Mediaplane start {mp['start_seconds']} s (embedded PostgreSQL + migrations); upload "
        f"(sign + multipart POST) {mp['upload_mean_ms']} ms per photo; profile output "
        f"{mp['profile_check']}. Whole run {report['elapsed_seconds']} s.",
        "",
        summary_line(report),
    ]
    return "\n".join(lines)


def summary_line(report: dict[str, Any]) -> str:
    mp = report["mediaplane"]
    r = report["ratios"]
    cold = mp["cold"]
    cached = mp["cached"]
    best_cached = max(cached.values(), key=lambda row: row["rps"])
    up = report["memory"]["upload"]
    text = (
        f"SUMMARY images_get: cold profile {cold['1']['rps']:.1f} req/s (c=1), "
        f"{cold['4']['rps']:.1f} req/s (c=4); cached {best_cached['rps']:.0f} req/s "
        f"(best, c={best_cached['concurrency']}); 304 {mp['revalidate']['8']['rps']:.0f} req/s; "
        f"40 MB upload RSS Δ {up['tree_delta'] / 2**20:.1f} MiB "
        f"({up['tree_delta_over_file']:.2f}× file)"
    )
    if r:
        text += (
            f"; Mediaplane/thumbor req/s: cold {r.get('cold_c1_rps', float('nan')):.2f}×/"
            f"{r.get('cold_c4_rps', float('nan')):.2f}× (c=1/4), cached "
            f"{r.get('cached_c1_rps', float('nan')):.2f}×/"
            f"{r.get('cached_c8_rps', float('nan')):.2f}×/"
            f"{r.get('cached_c32_rps', float('nan')):.2f}× (c=1/8/32)"
        )
    else:
        text += f"; thumbor: {report.get('thumbor', {}).get('skipped', 'not run')}"
    return text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="fewer objects, shorter passes (~30 s)"
    )
    parser.add_argument(
        "--n", type=int, default=0, help="objects per cold pass (default 40, quick 12)"
    )
    parser.add_argument(
        "--rounds", type=int, default=0, help="cold rounds per concurrency (default 3, quick 1)"
    )
    parser.add_argument("--no-peer", action="store_true", help="skip thumbor")
    parser.add_argument(
        "--thumbor-processes",
        type=int,
        default=os.cpu_count() or 1,
        help="thumbor --processes (default: one per core)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work dir (logs, data)")
    args = parser.parse_args()

    become_subreaper()

    # SIGTERM/SIGHUP → KeyboardInterrupt-like exit, so the `finally` blocks stop the servers.
    def interrupted(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGHUP, interrupted)

    try:
        import uvloop  # in the venv through uvicorn[standard]: a cheaper client loop
    except ImportError:
        uvloop = None
    report = uvloop.run(main_async(args)) if uvloop else asyncio.run(main_async(args))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(render(report))
    print(f"results written to {RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

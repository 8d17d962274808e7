"""Count a hit against a bucket; refuse it with `RateLimited` past the limit.

A fixed window is enough for "N signed URLs per user per minute": one atomic upsert per hit,
no clock shared between processes but the database's own `now()`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.orm import Session

from mediaplane.errors import RateLimited


@dataclass(frozen=True)
class RateLimit:
    limit: int
    window_seconds: int


_HIT = text(
    """
    WITH w AS (
      SELECT to_timestamp(floor(extract(epoch FROM now()) / :window) * :window) AS start
    ), del AS (
      DELETE FROM rate_limit_counters
      WHERE bucket = :bucket AND window_start < (SELECT start FROM w)
    )
    INSERT INTO rate_limit_counters (bucket, window_start, count)
    SELECT :bucket, start, 1 FROM w
    ON CONFLICT (bucket, window_start)
      DO UPDATE SET count = rate_limit_counters.count + 1
    RETURNING count,
      extract(epoch FROM (window_start + make_interval(secs => :window) - now())) AS remaining
    """
)


def hit(session: Session, *, bucket: str, rule: RateLimit) -> int:
    """Count one hit in the current window; return the count, or raise `RateLimited`."""
    row = session.execute(_HIT, {"bucket": bucket, "window": rule.window_seconds}).one()
    count, remaining = int(row[0]), float(row[1])
    if count > rule.limit:
        retry_after = max(1, math.ceil(remaining))
        raise RateLimited(
            "rate_limited",
            f"at most {rule.limit} requests per {rule.window_seconds} s; retry in {retry_after} s",
            retry_after=retry_after,
        )
    return count

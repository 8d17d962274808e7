"""Fixed-window rate limits counted in PostgreSQL, so they hold across server processes."""

from mediaplane.ratelimit.service import RateLimit, hit

__all__ = ["RateLimit", "hit"]

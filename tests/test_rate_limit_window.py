"""The rate limit's window ends: past the limit a user waits at most the window, then may
ask again. A 1-second window stands in for the minute (no sleep of a minute)."""

from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from mediaplane.errors import RateLimited
from mediaplane.ratelimit import RateLimit, hit
from tests.media_api.helpers import bearer

WINDOW = 1
LIMIT = 2


def start_of_next_window(session_time: float) -> float:
    return (session_time // WINDOW + 1) * WINDOW


def wait_for_a_fresh_window(runtime) -> None:
    """Sleep to just after a window starts, by the database's clock (the one that counts), so
    the hits that follow all fall in one window."""
    with runtime.database.transaction() as session:
        now = float(session.execute(text("SELECT extract(epoch FROM clock_timestamp())")).scalar())
    time.sleep(start_of_next_window(now) - now + 0.02)


def test_hits_past_the_limit_are_refused_until_the_window_ends(runtime) -> None:
    rule = RateLimit(limit=LIMIT, window_seconds=WINDOW)
    wait_for_a_fresh_window(runtime)
    counts = []
    for _ in range(LIMIT):
        with runtime.database.transaction() as session:
            counts.append(hit(session, bucket="b", rule=rule))
    assert counts == [1, 2]
    with pytest.raises(RateLimited) as refused, runtime.database.transaction() as session:
        hit(session, bucket="b", rule=rule)
    assert refused.value.retry_after == 1

    wait_for_a_fresh_window(runtime)
    with runtime.database.transaction() as session:
        assert hit(session, bucket="b", rule=rule) == 1  # a new window counts from zero
        # ...and the old window's counter is gone, not kept forever.
        rows = session.execute(text("SELECT count(*) FROM rate_limit_counters")).scalar()
    assert rows == 1


@pytest.mark.parametrize(
    "settings_overrides",
    [{"images_upload_rate_limit": LIMIT, "images_upload_rate_window_seconds": WINDOW}],
)
def test_signed_url_endpoint_answers_again_after_retry_after(
    client: TestClient, runtime, make_token
) -> None:
    alice = bearer(make_token(aud="media", roles=["user"], sub="alice"))
    wait_for_a_fresh_window(runtime)
    codes = [client.post("/api/images/upload", headers=alice).status_code for _ in range(LIMIT + 1)]
    assert codes == [200] * LIMIT + [429]
    over = client.post("/api/images/upload", headers=alice)
    assert over.status_code == 429
    retry_after = int(over.headers["retry-after"])
    assert retry_after == WINDOW

    time.sleep(retry_after)  # what a client told to wait does
    again = client.post("/api/images/upload", headers=alice)
    assert again.status_code == 200, again.text
    assert again.json()["result"]["upload_url"].startswith("http://testserver/_images/")

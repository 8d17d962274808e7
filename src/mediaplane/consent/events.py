"""`ConsentRevoked`: what other features hear when a user withdraws a consent.

Handlers run synchronously, in subscription order, inside the transaction that records the
revocation, and receive its `Session`. That is the point: the faces feature erases a user's
biometric data in the same transaction, so either the revocation and the erasure both commit or
neither does. A handler that raises makes `revoke` raise, and the route rolls the revocation
back: the consent stays active rather than being recorded as revoked with the data still there.

Handlers should only do database work (deleting rows, deferring a job in the same database).
Side effects outside the transaction, such as deleting objects in storage, belong in a job
deferred by the handler, so they happen only if the revocation commits.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from mediaplane.consent.purposes import Purpose


@dataclass(frozen=True)
class ConsentRevoked:
    """`user_id` withdrew their consent to `purpose` at `revoked_at`."""

    user_id: str
    purpose: Purpose
    revoked_at: datetime


Handler = Callable[[Session, ConsentRevoked], None]

# Process-wide, like the revocations it serves: every route or job that revokes must reach the
# same handlers. Subscriptions happen at import or start-up; the lock only keeps them consistent.
_handlers: list[Handler] = []
_lock = threading.Lock()


def subscribe(handler: Handler) -> Callable[[], None]:
    """Call `handler(session, event)` on every revocation; returns a function that unsubscribes."""
    with _lock:
        _handlers.append(handler)

    def unsubscribe() -> None:
        with _lock:
            if handler in _handlers:
                _handlers.remove(handler)

    return unsubscribe


def publish(session: Session, event: ConsentRevoked) -> None:
    """Run every handler in `session`'s transaction; the first exception propagates."""
    with _lock:
        handlers = tuple(_handlers)
    for handler in handlers:
        handler(session, event)

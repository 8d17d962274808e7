"""Consent: what a user allows (`Purpose`), the guard routes use, and the revocation event.

`require_consent` gates a route; `grant`, `revoke`, `list` and `has_active` are the service verbs
(call them as `consent.list(...)`); `subscribe` hears `ConsentRevoked` inside the revoking
transaction, which is how the faces feature erases biometric data atomically with revocation.
"""

from mediaplane.consent.dependencies import require_consent
from mediaplane.consent.events import ConsentRevoked, subscribe
from mediaplane.consent.models import Consent
from mediaplane.consent.purposes import Purpose
from mediaplane.consent.service import grant, has_active, list, revoke

__all__ = [
    "Consent",
    "ConsentRevoked",
    "Purpose",
    "grant",
    "has_active",
    "list",
    "require_consent",
    "revoke",
    "subscribe",
]

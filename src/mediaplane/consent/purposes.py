"""The fixed set of things a user can consent to.

A purpose is stored by its value in `consents.purpose`, so members are added, never renamed or
removed: old rows must keep meaning what they meant when the user agreed.
"""

from __future__ import annotations

from enum import StrEnum


class Purpose(StrEnum):
    """What a consent allows; the value is the one used in URLs and rows."""

    BIOMETRIC_PROCESSING = "biometric_processing"
    """Face detection and matching on your selfie and on event photos."""

    MARKETING_EMAIL = "marketing_email"
    """News and offers by email from the platform and the photographers of your events."""

"""Presigned uploads of the Media API: issuing, noticing arrivals exactly once, sweeping."""

from mediaplane.uploads.models import PendingUpload, UploadKind, UploadStatus
from mediaplane.uploads.service import HandOff, Signal
from mediaplane.uploads.tracker import SweepReport, UploadTracker

__all__ = [
    "HandOff",
    "PendingUpload",
    "Signal",
    "SweepReport",
    "UploadKind",
    "UploadStatus",
    "UploadTracker",
]

"""Runs `UploadTracker.sweep` periodically in a background thread of the serving process.

Stores without event notifications (R2, SeaweedFS) rely on it; with notifications it is the
safety net for a lost event or a server restarted between a PUT and its notice.
"""

from __future__ import annotations

import logging
import threading

from mediaplane.uploads.tracker import UploadTracker

log = logging.getLogger(__name__)


class SweeperThread:
    def __init__(self, tracker: UploadTracker, *, interval_seconds: float) -> None:
        self._tracker = tracker
        self._interval = interval_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="upload-sweeper", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                report = self._tracker.sweep()
                if report.settled or report.expired:
                    log.info("sweep: %s", report)
            except Exception:  # the next round retries; a sweep must never kill the thread
                log.exception("upload sweep failed")

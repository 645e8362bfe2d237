"""Follow the metric stop spec file (a downward-API file in a cluster) and hand changes to the store.

The kubelet rewrites a downward-API file when the pod's annotation changes, so a spec edit
mid-run reaches the sidecar without a restart; the store then folds every kept report again.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
import threading

from .store import MetricStore

log = logging.getLogger("plateau_sidecar")

MAX_SPEC_BYTES = 64 * 1024
DEFAULT_SPEC_POLL_SECONDS = 1.0


class SpecFollower:
    def __init__(self, path: str, store: MetricStore, poll_interval: float = DEFAULT_SPEC_POLL_SECONDS) -> None:
        self.path = path
        self.store = store
        self.poll_interval = poll_interval
        self._unreadable = False

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self.poll()
            stop.wait(self.poll_interval)

    def poll(self) -> None:
        """Read the file; an absent, empty or unreadable one leaves the spec as it was."""
        try:
            data = _read_regular(self.path, MAX_SPEC_BYTES + 1)
        except OSError as exc:
            if not self._unreadable:
                log.warning("cannot read the metric stop spec %s: %s (the track waits for it)", self.path, exc.strerror)
            self._unreadable = True
            return
        self._unreadable = False
        # An oversized file is cut short, so it fails validation and is counted as a bad spec.
        text = data.decode("utf-8", errors="replace").strip()
        if text:
            self.store.set_spec(text)


def _read_regular(path: str, limit: int) -> bytes:
    """Up to `limit` bytes of a regular file. A FIFO (whose open or read would wait for a writer)
    or a device is refused with an OSError, never read."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", path)
        with open(fd, "rb", closefd=False) as handle:
            return handle.read(limit)
    finally:
        os.close(fd)

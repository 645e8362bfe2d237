"""Follow a file like `tail -F`: wait for it, survive rotation and truncation, keep partial lines.

Polling rather than inotify: it needs nothing outside the standard library, works on every
volume type (emptyDir, NFS, overlay), and an evaluation-rate source does not need sub-100 ms
latency. The file is read from its beginning, so a restarted sidecar rebuilds its counts.
"""

from __future__ import annotations

import logging
import os
import stat
import threading
import time
from typing import BinaryIO

from .records import LineSink
from .store import BadInput, MetricStore

log = logging.getLogger("plateau_sidecar")

DEFAULT_MAX_LINE_BYTES = 64 * 1024
DEFAULT_POLL_INTERVAL = 0.2
# Small enough that one chunk holds the store's lock for only a few milliseconds, so scrapes
# stay fast while a large backlog is read.
CHUNK_BYTES = 256 * 1024
# On shutdown the rest of the file is read, for at most this long: a file that is still being
# written faster than it is read, or lines that each use the pattern's whole time limit, must not
# keep the sidecar from exiting within the pod's grace period.
DRAIN_SECONDS = 10.0


class FileFollower:
    def __init__(
        self,
        path: str,
        sink: LineSink,
        store: MetricStore,
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        drain_seconds: float = DRAIN_SECONDS,
    ) -> None:
        self.path = path
        self.sink = sink
        self.store = store  # where bad input (missing file, long lines) is counted
        self.max_line_bytes = max_line_bytes
        self.poll_interval = poll_interval
        self.drain_seconds = drain_seconds
        self._file: BinaryIO | None = None
        self._identity: tuple[int, int] | None = None  # (st_dev, st_ino) of the open file
        self._partial = b""  # an unterminated last line, completed by a later read
        self._skipping = False  # discarding the rest of an over-long line
        self._strip_nul = False  # after a copytruncate, a writer's hole reads as NUL bytes
        self._missing = False
        self.failure: BaseException | None = None  # what ended `run` early, if anything did
        self.failed_polls = 0

    # --- the loop -------------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Poll until `stop` is set, then read what is left, so a shutdown loses no line.
        An unexpected failure in one poll is logged and counted (`read_error`), and polling goes
        on; should the thread end anyway, `failure` says why (the sidecar's /healthz reports it)."""
        try:
            while not stop.is_set():
                if not self._poll_counting_failures():
                    stop.wait(self.poll_interval)
            deadline = time.monotonic() + self.drain_seconds
            while self._poll_counting_failures():
                if time.monotonic() > deadline:
                    log.warning("stopped reading %s after %s s of draining; the rest is not exported",
                                self.path, self.drain_seconds)
                    break
        except BaseException as e:  # the thread ends: logged here, not again by threading
            self.failure = e
            log.critical("stopped following %s: %r", self.path, e, exc_info=True)
        finally:
            self.close()

    def _poll_counting_failures(self) -> bool:
        try:
            return self.poll()
        except Exception as e:
            self.failed_polls += 1
            if self.failed_polls == 1:  # the traceback once; the store logs its kind once too
                log.exception("following %s failed; going on", self.path)
            self.store.report_bad(BadInput.READ_ERROR, f"following {self.path}: {e!r:.200}")
            return False  # wait before the next try

    def poll(self) -> bool:
        """Read what is available; True if there may be more to read right away."""
        if self._file is None and not self._open():
            return False
        assert self._file is not None
        data = self._file.read(CHUNK_BYTES)
        if data:
            self._feed(data)
            return True
        return self._at_eof()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    # --- file handling --------------------------------------------------------------------------

    def _open(self) -> bool:
        # O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer, forever.
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
        except OSError as e:
            return self._absent(BadInput.MISSING_FILE, f"waiting for {self.path}: {e.strerror}")
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):  # a FIFO or a device never ends (/dev/urandom): never read
            os.close(fd)
            return self._absent(BadInput.NOT_A_FILE, f"{self.path} is not a regular file; waiting for one")
        f = open(fd, "rb", buffering=0)  # noqa: SIM115 (kept open across polls)
        self._file, self._identity, self._missing = f, (st.st_dev, st.st_ino), False
        log.info("following %s", self.path)
        return True

    def _absent(self, kind: BadInput, detail: str) -> bool:
        if not self._missing:  # counted once per episode, not once per poll
            self._missing = True
            self.store.report_bad(kind, detail)
        return False

    def _at_eof(self) -> bool:
        assert self._file is not None
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return False  # removed: keep the old file (a writer may still hold it) until a new one appears
        if (st.st_dev, st.st_ino) != self._identity:
            # Rotated: the old file is read to its end; its unterminated last line is complete now.
            log.info("%s was rotated; following the new file", self.path)
            self._flush_partial()
            self.close()
            return True
        position = self._file.tell()
        if st.st_size < position:
            self.store.report_bad(BadInput.TRUNCATED_FILE, f"{self.path} shrank from {position} to {st.st_size} bytes")
            self._file.seek(0)
            self._partial, self._skipping, self._strip_nul = b"", False, True
            return True
        return False

    # --- lines ------------------------------------------------------------------------------------

    def _feed(self, data: bytes) -> None:
        if self._strip_nul:
            data = data.lstrip(b"\0")
            self._strip_nul = not data
        lines = data.split(b"\n")
        tail = lines.pop()  # b"" when data ends with a newline
        if self._skipping and lines:
            del lines[0]  # the end of the over-long line
            self._skipping = False
        elif self._partial and lines:
            lines[0] = self._partial + lines[0]
            self._partial = b""
        if not self._skipping:
            self._keep_partial(tail)
        if lines and max(map(len, lines)) > self.max_line_bytes:
            lines = [line for line in lines if not self._too_long(line)]
        if lines:
            self.sink(lines)

    def _keep_partial(self, tail: bytes) -> None:
        partial = self._partial + tail
        if len(partial) > self.max_line_bytes:
            self._too_long(partial)
            partial, self._skipping = b"", True
        self._partial = partial

    def _too_long(self, line: bytes) -> bool:
        if len(line) <= self.max_line_bytes:
            return False
        self.store.report_bad(
            BadInput.LINE_TOO_LONG,
            f"a line of {self.path} is longer than {self.max_line_bytes} bytes: {line[:80]!r}...",
        )
        return True

    def _flush_partial(self) -> None:
        if self._partial and not self._skipping:
            self.sink([self._partial])
        self._partial, self._skipping = b"", False

"""The push route's journal: every accepted push, appended to a file on the pod's shared volume.

A sidecar container that restarts (the pod stays) takes the journal in again before it serves,
so its series and its track are what they were, exactly as the file and stdout routes re-read
their files. A push is answered only once it is in the journal (or its write failed, which is
counted). The journal is bounded: past `max_bytes` it stops growing (logged once), and only a
restart after that loses reports. So is each line, to what a push of `--max-push-bytes` can
become: a longer line (a tampered file) is skipped on replay, never held in memory.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import stat
from collections.abc import Sequence

from .ledger import Origin
from .records import LineSink
from .server import DEFAULT_MAX_BODY_BYTES

log = logging.getLogger("plateau_sidecar")

DEFAULT_MAX_JOURNAL_BYTES = 64 * 1024 * 1024
READ_CHUNK_BYTES = 1024 * 1024


def line_bound(max_push_bytes: int) -> int:
    """The longest line `append` writes for a push body of up to `max_push_bytes`. Written again,
    a body can grow: 1e15 is written 1000000000000000.0, 4.5 times as long; a line of a named
    push adds its origin (at most 64 + 18 characters) and 8 of punctuation."""
    return 5 * max_push_bytes + 1024


class PushJournal:
    def __init__(self, path: str, max_bytes: int = DEFAULT_MAX_JOURNAL_BYTES,
                 max_line_bytes: int = line_bound(DEFAULT_MAX_BODY_BYTES)) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.max_line_bytes = max_line_bytes
        self.full = False
        self._size = 0

    @property
    def _overlong(self) -> bytes:
        return f"(a line over {self.max_line_bytes} bytes, which this journal never writes: skipped)".encode()

    def replay(self, sink: LineSink) -> int:
        """Feed the journal's complete lines to `sink` (`jsonl_sink(store, pushes=True)`);
        returns how many. A last line cut short
        (the sidecar died mid-append, and that push was never answered) is cut off the file.
        Only what this journal can have written is read, its first `max_bytes`: `append` never
        writes past them, so they bound its lines too (a record re-encoded can be longer than the
        push it came in: 1e15 is written 1000000000000000.0). A larger file is left as it is, and
        full. A line that is not a record is the sink's to count; the lines after it are taken.
        A line longer than `max_line_bytes` is not read into memory: the sink gets a line saying
        so in its place, to count."""
        lines = offset = 0  # offset: the end of the last complete line
        rest = bytearray()  # the line read so far, not complete yet (dropped once too long)
        pending = 0  # the length of that line so far
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_NONBLOCK)
        except FileNotFoundError:
            return 0
        with open(fd, "rb+", buffering=0) as handle:
            if not stat.S_ISREG(os.fstat(fd).st_mode):  # a FIFO or a device would never end
                raise OSError(errno.EINVAL, "the push journal is not a regular file", self.path)
            left = self.max_bytes
            while left and (chunk := handle.read(min(READ_CHUNK_BYTES, left))):
                left -= len(chunk)
                end = chunk.rfind(b"\n") + 1
                if not end:
                    pending += len(chunk)
                    rest = bytearray() if pending > self.max_line_bytes else rest + chunk
                    continue
                batch = chunk[: end - 1].split(b"\n")  # the first one goes on from `rest`
                overlong = pending + len(batch[0]) > self.max_line_bytes
                batch[0] = self._overlong if overlong else bytes(rest) + batch[0]
                sink(batch)
                lines += len(batch)
                offset += pending + end
                rest = bytearray(chunk[end:])
                pending = len(rest)
            eof = left > 0 or not handle.read(1)
            if not eof:
                log.warning("the push journal %s is larger than --max-journal-bytes (%d): replayed up to byte %d",
                            self.path, self.max_bytes, offset)
            elif pending:
                handle.truncate(offset)
        self._size = offset
        self.full = not eof
        return lines

    def append(self, records: Sequence[object], origin: Origin | None = None) -> None:
        """Write the records in one write, flushed before the push is answered: a push from a
        named origin as one line, `[reporter, first, [records]]` (whole, or cut off on replay, so
        the ledger never holds records the store lacks, nor the reverse), others as a line each.
        Raises OSError when the file cannot be written."""
        if self.full:
            return
        # UTF-8 as it came, not ASCII escapes (which make an 'é' 6 bytes); a lone surrogate (from a
        # \ud800 escape) has no UTF-8, and "backslashreplace" writes it as that escape again.
        lines = [[origin.reporter, origin.first, records]] if origin is not None else records
        encoded = [json.dumps(line, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "backslashreplace")
                   for line in lines]
        if any(len(line) > self.max_line_bytes for line in encoded):  # line_bound says never; replay would skip it
            raise OSError(f"a push journal line over {self.max_line_bytes} bytes")
        data = b"".join(line + b"\n" for line in encoded)
        if self._size + len(data) > self.max_bytes:
            self.full = True
            log.warning("the push journal %s reached %d bytes: later pushes are not journaled, so a sidecar"
                        " restart would lose them", self.path, self.max_bytes)
            return
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            if os.write(fd, data) != len(data):
                raise OSError(f"short write to {self.path}")
        finally:
            os.close(fd)
        self._size += len(data)

"""Which pushes the sidecar took, per client, so that a push resent after its answer was lost
(the client timed out while the sidecar was slow) is not taken twice.

A client names itself (`Plateau-Reporter`, random per process) and numbers its records in
order; a push says the number of its first record (`Plateau-Sequence`). A client resends the
records of a failed push in front of newer ones and only ever drops its oldest, so a push's
records are consecutive, and a resend starts with the ones already taken, if any. A push
without these headers (an older client, curl) is taken as it comes.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import dataclass

from .protocol import PUSH_REPORTER_HEADER, PUSH_SEQUENCE_HEADER

MAX_REPORTERS = 1024  # clients remembered; beyond, the one heard from least recently is forgotten
_REPORTER = re.compile(r"[0-9A-Za-z_-]{1,64}")
_SEQUENCE = re.compile(r"[0-9]{1,18}")


@dataclass(frozen=True)
class Origin:
    """Who sent a push, and the sequence number of its first record."""

    reporter: str
    first: int

    @classmethod
    def from_headers(cls, reporter: str | None, sequence: str | None) -> Origin | None:
        """The origin a push's headers name, or None for a push that names none. ValueError
        for headers that are not a reporter name and a sequence number, both or neither."""
        if reporter is None and sequence is None:
            return None
        if reporter is None or not _REPORTER.fullmatch(reporter):
            raise ValueError(f"{PUSH_REPORTER_HEADER} must be 1 to 64 of [0-9A-Za-z_-], with {PUSH_SEQUENCE_HEADER}")
        if sequence is None or not _SEQUENCE.fullmatch(sequence):
            raise ValueError(f"{PUSH_SEQUENCE_HEADER} must be a decimal number of at most 18 digits,"
                             f" with {PUSH_REPORTER_HEADER}")
        return cls(reporter, int(sequence))


class PushLedger:
    """The last sequence number taken from each reporter. Not thread-safe: the store's lock
    guards it, so that checking a push and taking it are one step."""

    def __init__(self, max_reporters: int = MAX_REPORTERS) -> None:
        self.max_reporters = max_reporters
        self._last: OrderedDict[str, int] = OrderedDict()

    def taken_before(self, origin: Origin, count: int) -> int:
        """How many of a push's `count` records, from its first, were taken already."""
        last = self._last.get(origin.reporter, -1)
        return max(0, min(count, last - origin.first + 1))

    def take(self, origin: Origin, count: int) -> None:
        """Note that the push's records up to its `count`th are taken (none: nothing to note)."""
        if count <= 0:
            return
        last = max(self._last.pop(origin.reporter, -1), origin.first + count - 1)
        self._last[origin.reporter] = last
        if len(self._last) > self.max_reporters:
            self._last.popitem(last=False)

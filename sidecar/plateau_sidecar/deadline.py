"""Reading an HTTP request within one total deadline and a byte budget, and its Content-Length.

A socket timeout bounds one receive; a client sending a byte now and then resets it forever.
Here every receive (and the answer's send) waits only until the request's deadline, and reads
stop at a budget: the head first, then the body the request declared. Imports nothing from
the sidecar.
"""

from __future__ import annotations

import io
import re
import socket
import time
from email.message import Message

MAX_HEAD_BYTES = 64 * 1024  # the request line and every header together
_DIGITS = re.compile(r"[0-9]{1,15}")  # int() would also take '-1', '+5', '1_0' and ' ٣'


class RequestTooLarge(OSError):
    """More bytes than the request may send (its head, then the body it declared)."""


class DeadlineReader(io.RawIOBase):
    """The connection's input, read within one total deadline and up to a byte budget."""

    def __init__(self, connection: socket.socket, deadline: float, budget: int) -> None:
        self.connection = connection
        self.deadline = deadline
        self.budget = budget

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if self.budget <= 0:
            raise RequestTooLarge("the request sent more than its head and declared body")
        arm(self.connection, self.deadline)
        view = memoryview(buffer)
        read = self.connection.recv_into(view[: min(len(view), self.budget)])
        self.budget -= read
        return read


def arm(connection: socket.socket, deadline: float) -> None:
    """Let the next socket operation wait only until `deadline`; raise TimeoutError past it."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError("the request's deadline passed")
    connection.settimeout(remaining)


def content_length(headers: Message) -> int | None:
    """The body's length, or None unless exactly one plain decimal length is declared (repeats
    that agree are one) and no Transfer-Encoding competes with it."""
    values = {v.strip() for v in headers.get_all("Content-Length", [])}
    if len(values) != 1 or headers.get("Transfer-Encoding") is not None:
        return None
    text = values.pop()
    return int(text) if _DIGITS.fullmatch(text) else None

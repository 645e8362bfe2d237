"""The two local processes, the trainer and `plateau-sidecar`, and the stop handshake.

Both run in their own session, so a Ctrl-C on the terminal reaches `plateau run` alone, which
then stops them in order. Signals to the trainer go to its whole process group, as the
container runtime ends a whole container.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable, Iterable, Iterator, Optional, Protocol

from plateau.api.errors import InputError
from plateau.local.metrics import MAX_LINE_BYTES
from plateau_sidecar.protocol import HEALTH_PATH, METRICS_PATH

SIDECAR_START_SECONDS = 15.0
TAIL_LINES = 20
READ_BYTES = 64 * 1024  # the trainer's output is read in chunks of at most this, whatever its lines
_LINE_ENDS = re.compile(rb"([\r\n])")


def describe_exit(returncode: int) -> str:
    if returncode < 0:
        return f"was ended by {signal.Signals(-returncode).name}"
    return f"exited with code {returncode}"


def draft_of(path: Path) -> Path:
    """Where a file is written whole before it is renamed into place."""
    return path.with_name(path.name + ".tmp")


def visible_lines(chunks: Iterable[bytes], limit: int = MAX_LINE_BYTES) -> Iterator[str]:
    """Output as a terminal shows it, line by line, each line at most `limit` bytes: after a
    carriage return the line is drawn anew (a progress bar), and bytes past the limit are dropped
    up to the line's end, so a line that never ends costs bounded memory."""
    line, drawn = bytearray(), b""  # since the last line end; the line's last drawing before a \r
    for chunk in chunks:
        for piece in _LINE_ENDS.split(chunk):
            if piece == b"\n":
                yield (line or drawn).decode(errors="replace")  # "text\r\n" shows text
                line, drawn = bytearray(), b""
            elif piece == b"\r":
                if line:
                    line, drawn = bytearray(), bytes(line)
            else:
                line += piece[: limit - len(line)]
    if line or drawn:
        yield (line or drawn).decode(errors="replace")


def exit_status(returncode: int) -> int:
    """A shell's view of a process's end: 128+N for a signal."""
    return 128 - returncode if returncode < 0 else returncode


class Sidecar:
    """`plateau-sidecar`, started from this Python so it is the same installation."""

    def __init__(self, env: dict[str, str], metrics_url: str, log_path: Path, linger: float) -> None:
        self.metrics_url = metrics_url
        self.log_path = log_path
        with log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "plateau_sidecar.main", "--linger", f"{linger:g}"],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_ready(self, timeout: float = SIDECAR_START_SECONDS) -> None:
        """Until /healthz answers; a sidecar that exits (e.g. its port was taken) is an input error."""
        health = self.metrics_url.removesuffix(METRICS_PATH) + HEALTH_PATH
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise InputError(f"the sidecar did not start: {self._last_log_line()}")
            try:
                with urllib.request.urlopen(health, timeout=1):
                    return
            except OSError:
                time.sleep(0.05)
        self.kill()
        raise InputError(f"the sidecar did not answer on {health} within {timeout:g}s (log: {self.log_path})")

    def _last_log_line(self) -> str:
        lines = self.log_path.read_text(errors="replace").strip().splitlines()
        return lines[-1] if lines else f"exited with code {self.process.returncode}"

    def drain(self, read: Callable[[], None], timeout: float) -> None:
        """SIGTERM: the sidecar reads its files to the end and stays up until a scrape has seen
        the last report (--linger). `read` keeps scraping meanwhile; the last read that answered
        holds every report."""
        self.process.terminate()
        deadline = time.monotonic() + timeout
        while self.process.poll() is None and time.monotonic() < deadline:
            read()
            time.sleep(0.1)
        self.kill()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()


class Trainer:
    """The trainer process; its output goes to a log file and, line by line as `visible_lines`
    shows it, to `on_line` and the last TAIL_LINES to `tail`."""

    def __init__(
        self,
        command: list[str],
        env: dict[str, str],
        output: Path,
        on_line: Callable[[str], None],
    ) -> None:
        self.tail: deque[str] = deque(maxlen=TAIL_LINES)
        try:
            self.process = subprocess.Popen(
                command,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as exc:
            raise InputError(f"cannot start the trainer {command[0]}: {exc.strerror}") from None
        self._reader = threading.Thread(target=self._copy, args=(output, on_line), name="trainer-output", daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        return self.process.pid

    def _copy(self, output: Path, on_line: Callable[[str], None]) -> None:
        with output.open("ab") as log:
            for line in visible_lines(self._chunks(log)):
                self.tail.append(line)
                on_line(line)

    def _chunks(self, log: BinaryIO) -> Iterator[bytes]:
        """The output as it comes, copied byte for byte into `log`."""
        assert self.process.stdout is not None
        while chunk := self.process.stdout.read1(READ_BYTES):
            log.write(chunk)
            log.flush()  # the sidecar follows this file for source stdout
            yield chunk

    def poll(self) -> Optional[int]:
        return self.process.poll()

    def signal(self, signum: signal.Signals) -> None:
        try:
            os.killpg(self.process.pid, signum)
        except ProcessLookupError:  # the group is gone already
            pass

    def reap(self) -> int:
        """Once the trainer has exited: end what it left behind in its group, as a container's
        end would, and collect the rest of its output."""
        returncode = self.process.wait()
        self.signal(signal.SIGKILL)
        self._reader.join(timeout=5)
        return returncode


class Signalled(Protocol):
    def signal(self, signum: signal.Signals) -> None: ...


@dataclass
class Handshake:
    """Stop request, then SIGTERM once the grace period is over, then SIGKILL `kill_after` later."""

    trainer: Signalled
    grace: float
    kill_after: float
    requested_at: float
    terminated_at: Optional[float] = None
    killed_at: Optional[float] = None
    hurried: int = 0  # Ctrl-Cs during the handshake

    @classmethod
    def begin(cls, trainer: Signalled, stop_file: Path, reason: str, grace: float, kill_after: float, now: float) -> Handshake:
        # Written whole and renamed, so the trainer never reads half a reason.
        partial = draft_of(stop_file)
        partial.write_text(reason + "\n")
        partial.replace(stop_file)
        return cls(trainer, grace, kill_after, requested_at=now)

    def advance(self, now: float) -> Optional[str]:
        """Send the signal that is due, if any; returns what was done."""
        if self.terminated_at is None:
            if now >= self.requested_at + self.grace:
                return self._terminate(now)
        elif self.killed_at is None and now >= self.terminated_at + self.kill_after:
            return self._kill(now)
        return None

    def hurry(self, now: float) -> str:
        """A Ctrl-C during the handshake. The first one ends the grace period: SIGTERM now, but
        SIGKILL still waits `kill_after`, the trainer's time to checkpoint on SIGTERM. The next
        one sends SIGKILL now. Returns what was done."""
        self.hurried += 1
        if self.terminated_at is None:
            return self._terminate(now) + f"; SIGKILL in {self.kill_after:g}s if it is still running (once more to send it now)"
        if self.killed_at is not None:
            return "SIGKILL was sent already"
        if self.hurried < 2:
            left = self.terminated_at + self.kill_after - now
            return f"SIGTERM was sent already; SIGKILL in {left:.1f}s if the trainer is still running (once more to send it now)"
        return self._kill(now)

    def _terminate(self, now: float) -> str:
        self.terminated_at = now
        self.trainer.signal(signal.SIGTERM)
        return f"the trainer did not exit within {now - self.requested_at:.1f}s of the stop request: sent SIGTERM"

    def _kill(self, now: float) -> str:
        assert self.terminated_at is not None
        self.killed_at = now
        self.trainer.signal(signal.SIGKILL)
        return f"the trainer is still running {now - self.terminated_at:.1f}s after SIGTERM: sent SIGKILL"

    def summary(self, returncode: int, ended_at: float) -> str:
        """What the handshake took, for the StopRequested condition."""
        sent = [name for name, at in (("SIGTERM", self.terminated_at), ("SIGKILL", self.killed_at)) if at is not None]
        return f"the trainer {describe_exit(returncode)} {ended_at - self.requested_at:.1f}s after the stop request (signals sent: {', '.join(sent) or 'none'})"

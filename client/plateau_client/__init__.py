"""Plateau's trainer-side client: report metrics to the sidecar, and see the operator's stop request.

Standard library only, so any training image can use it (`plateau_client.integrations` holds
the framework callbacks, each importing its framework only when imported). It never raises
into the training loop because of I/O trouble: metrics are worth less than the run, so a
failure warns once (per kind of failure) and training goes on.

    import plateau_client

    for epoch in range(epochs):
        ...
        plateau_client.report(step, val_loss=val_loss, accuracy=acc)
        if plateau_client.should_stop():
            save_checkpoint()
            break

Where reports go, from the environment the operator sets:
- `PLATEAU_PUSH_URL` set: POSTed to the sidecar's push endpoint, never through a proxy. Records
  the sidecar could not take (it was down, or busy: 429) are kept, up to a bound, and sent with
  the next report. Records are numbered, so the sidecar skips those of a resend it took before
  (the answer was lost): each arrives exactly once.
- otherwise: appended as JSON lines to `PLATEAU_METRICS_FILE` (default /plateau/metrics.jsonl).
"""

from __future__ import annotations

import json
import os
import reprlib
import stat
import sys
import threading
import time
import urllib.error
import urllib.request
import warnings
import weakref
from types import FrameType
from typing import SupportsFloat

# The trainer's side of the contract in plateau_sidecar.protocol, which this distribution cannot
# import (it has no dependencies); tests/unit/client/test_client.py checks that the two agree.
ENV_METRICS_FILE = "PLATEAU_METRICS_FILE"
ENV_PUSH_URL = "PLATEAU_PUSH_URL"
ENV_STOP_FILE = "PLATEAU_STOP_FILE"
DEFAULT_METRICS_FILE = "/plateau/metrics.jsonl"
DEFAULT_STOP_FILE = "/etc/plateau/stop"
MAX_STEP = 2**53  # steps are whole numbers below this: each is exact as a Prometheus float
PUSH_REPORTER_HEADER = "Plateau-Reporter"
PUSH_SEQUENCE_HEADER = "Plateau-Sequence"

PUSH_TIMEOUT_SECONDS = 2.0
MAX_PENDING_RECORDS = 10_000
MAX_STOP_BYTES = 256 * 1024  # Kubernetes' bound on all of a pod's annotations together

# The push endpoint is the sidecar in the trainer's own pod: an http_proxy set for dataset
# downloads must not take the push elsewhere (urllib's default opener would honour it).
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))

_warned: set[str] = set()
_warned_lock = threading.Lock()


def _warn_once(kind: str, message: str) -> None:
    with _warned_lock:  # several training threads may hit the same failure at once
        first = kind not in _warned
        _warned.add(kind)
    if first:
        warnings.warn(
            f"plateau: {message} (training goes on; this is reported once)", RuntimeWarning, stacklevel=_outside()
        )


def _describe(value: object) -> str:
    """A short repr for a warning; never raises (a broken __repr__, an int of 5,000 digits)."""
    try:
        return reprlib.repr(value)
    except Exception:
        return f"a {type(value).__name__}"


def _plain(value: object) -> object:
    """A numpy scalar, 0-d array or one-element tensor as the Python number it holds (`.item()`);
    any other value as it is."""
    if isinstance(value, (int, float, str, bytes)):
        return value
    item = getattr(value, "item", None)
    return item() if callable(item) else value


def _whole_step(step: object) -> int | None:
    """The step as the sidecar takes it (plateau_sidecar.store.step_of): an int, or a float with
    no fraction, in [0, MAX_STEP); None for anything else (a bool, text, 0.5, NaN). Never raises."""
    try:
        step = _plain(step)
        if isinstance(step, float) and step.is_integer():
            step = int(step)
        if isinstance(step, int) and not isinstance(step, bool) and 0 <= step < MAX_STEP:
            return int(step)  # a plain int for json.dumps, even from an int subclass
    except Exception:  # whatever a value's item(), is_integer() or __int__ raises
        pass
    return None


def _number(value: object) -> float:
    """A metric value as a float; raises TypeError for text and bools, which are no numbers (the
    sidecar refuses JSON strings and booleans), and whatever float() raises for the rest."""
    value = _plain(value)
    if isinstance(value, (str, bytes, bytearray, bool)):
        raise TypeError(f"{type(value).__name__} is not a number")
    return float(value)  # type: ignore[arg-type]  # numpy floats, Decimal, a tensor's __float__


_PACKAGE_DIR = os.path.dirname(__file__) + os.sep


def _outside() -> int:
    """The stack level of the first frame outside this package (the training loop's line, or the
    framework's that called a callback)."""
    frame: FrameType | None = sys._getframe(1)
    level = 1
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        frame, level = frame.f_back, level + 1
    return level


class Reporter:
    """Sends records to one destination; `report()` is the module-level shortcut."""

    def __init__(self, metrics_file: str | None = None, push_url: str | None = None) -> None:
        self.metrics_file = metrics_file or DEFAULT_METRICS_FILE
        self.push_url = push_url
        self._start_afresh()
        _reporters.add(self)

    def _start_afresh(self) -> None:
        """The state of a reporter new to its process (at first, and in a forked child)."""
        # Records not pushed yet with their sequence numbers, oldest first; a push in flight holds
        # its own. Threads may share a reporter (the module-level report() does), so _lock guards
        # the list, and _push_lock lets one thread at a time push, without holding _lock over the
        # network.
        self._pending: list[tuple[int, dict[str, object]]] = []
        self._lock = threading.Lock()
        self._push_lock = threading.Lock()
        # The name the sidecar knows this process's records by, and the next record's number.
        self._name = os.urandom(8).hex()
        self._next = 0

    def report(self, step: int, **metrics: SupportsFloat) -> None:
        """Never raises for a bad step or value: a bad step drops the report, a bad value the
        metric, each with a warning given once (the sidecar would refuse either). Safe to call
        from several threads."""
        whole_step = _whole_step(step)
        if whole_step is None:
            _warn_once("step", f"step {_describe(step)} is not an integer in [0, 2**53); the report is dropped")
            return
        record: dict[str, object] = {"step": whole_step}
        for name, value in metrics.items():
            try:
                record[name] = _number(value)
            except OverflowError:  # an int beyond the largest float
                _warn_once(f"value:{name}", f"metric {name!r} is too large for a float; it is not reported")
            except Exception:  # TypeError, ValueError, or whatever a value's __float__ raises
                _warn_once(f"value:{name}", f"metric {name!r} is not a number ({_describe(value)}); it is not reported")
        record["time"] = time.time()
        if self.push_url:
            self._push(record)
        else:
            self._append(record)

    def _append(self, record: dict[str, object]) -> None:
        line = (json.dumps(record) + "\n").encode()
        try:
            # One write() on an O_APPEND descriptor: lines from several processes do not interleave.
            # O_NONBLOCK: a FIFO without a reader fails at once (ENXIO) instead of blocking training.
            fd = os.open(self.metrics_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NONBLOCK, 0o644)
            try:
                os.write(fd, line)
            finally:
                os.close(fd)
        except OSError as e:
            _warn_once("file", f"cannot append metrics to {self.metrics_file}: {e}")

    def _push(self, record: dict[str, object]) -> None:
        with self._lock:
            self._pending.append((self._next, record))
            self._next += 1
            self._bound()
        # A thread that finds a push in flight leaves its record to that push's thread, which
        # pushes again while records are kept. The check after a release closes the gap where a
        # record comes just as that thread is done.
        while self._push_lock.acquire(blocking=False):
            try:
                sent = self._push_kept()
            finally:
                self._push_lock.release()
            with self._lock:
                if not sent or not self._pending:
                    return

    def _bound(self) -> None:
        """Drop the oldest records beyond MAX_PENDING_RECORDS; the caller holds _lock."""
        if len(self._pending) > MAX_PENDING_RECORDS:
            del self._pending[: len(self._pending) - MAX_PENDING_RECORDS]
            _warn_once("dropped", f"more than {MAX_PENDING_RECORDS} reports could not be pushed; dropping the oldest")

    def _push_kept(self) -> bool:
        """Push the kept records until none are left; False when a push failed, its records kept
        (in front of newer ones) or dropped as the sidecar's answer says. The caller holds _push_lock."""
        while True:
            with self._lock:
                batch, self._pending, name = self._pending, [], self._name
            if not batch:
                return True
            kept = self._send(name, batch)
            if kept is None:
                continue
            with self._lock:
                self._pending[:0] = kept
                self._bound()
            return False

    def _send(self, name: str, batch: list[tuple[int, dict[str, object]]]) -> list[tuple[int, dict[str, object]]] | None:
        """POST `batch`, whose records are numbered in sequence (only the oldest are ever dropped);
        None once the sidecar took it, else the records to keep for the next push."""
        try:
            request = urllib.request.Request(  # a URL without a scheme raises ValueError here
                self.push_url,  # type: ignore[arg-type]
                data=json.dumps([record for _, record in batch]).encode(),
                headers={"Content-Type": "application/json", PUSH_REPORTER_HEADER: name,
                         PUSH_SEQUENCE_HEADER: str(batch[0][0])},
                method="POST",
            )
            with _OPENER.open(request, timeout=PUSH_TIMEOUT_SECONDS):
                pass
        except urllib.error.HTTPError as e:
            _warn_once(f"http:{e.code}", f"the sidecar at {self.push_url} answered {e.code} {e.reason}")
            if e.code == 400:  # the sidecar will never take these records: do not resend them
                return []
            if e.code == 413:  # too many kept at once: the older half goes, so the next push can fit
                return batch[max(1, len(batch) // 2) :]
            return batch
        except (OSError, ValueError) as e:  # URLError, timeouts, resets; ValueError: a bad URL
            _warn_once("push", f"cannot push metrics to {self.push_url}: {e}")
            return batch
        return None


_reporter: Reporter | None = None
_reporter_lock = threading.Lock()
_reporters: weakref.WeakSet[Reporter] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    """A forked child (a DataLoader worker) has only the forking thread: locks another thread
    held stay held. Each reporter starts afresh there: new locks, a name of its own (the
    sidecar would take the child's records for resends of the parent's), and none of the
    records its parent kept (the parent sends those)."""
    global _reporter_lock, _warned_lock
    _reporter_lock, _warned_lock = threading.Lock(), threading.Lock()
    for reporter in list(_reporters):
        reporter._start_afresh()


if hasattr(os, "register_at_fork"):  # not on Windows, which has no fork
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _default_reporter() -> Reporter:
    """The reporter for the current environment, rebuilt when the environment changes."""
    global _reporter
    file, url = os.environ.get(ENV_METRICS_FILE) or None, os.environ.get(ENV_PUSH_URL) or None
    with _reporter_lock:  # threads reporting at once share one reporter, and so its kept records
        if _reporter is None or (_reporter.push_url, _reporter.metrics_file) != (url, file or DEFAULT_METRICS_FILE):
            _reporter = Reporter(metrics_file=file, push_url=url)
        return _reporter


def report(step: int, **metrics: SupportsFloat) -> None:
    """Report one evaluation: `report(120, val_loss=0.31, accuracy=0.9)`."""
    _default_reporter().report(step, **metrics)


def stop_reason(path: str | None = None) -> str | None:
    """The operator's stop request (the `plateau.dev/stop` annotation), or None when there is none.

    The operator's downward-API volume holds the annotation's value, empty while no stop is
    requested; a missing file (no volume, e.g. a local run) means no request either."""
    path = path or os.environ.get(ENV_STOP_FILE) or DEFAULT_STOP_FILE
    try:  # never a FIFO (whose open would wait for a writer) or a device, and never more than the bound
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            _warn_once("stop-file", f"the stop file {path} is not a regular file; it is not read")
            return None
        data = os.read(fd, MAX_STOP_BYTES)
    except OSError:
        return None
    finally:
        os.close(fd)
    return data.decode("utf-8", "replace").strip() or None


def should_stop(path: str | None = None) -> bool:
    """True once the operator asks the trainer to checkpoint and exit."""
    return stop_reason(path) is not None

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
- `PLATEAU_PUSH_URL` set: POSTed to the sidecar's push endpoint. Records the sidecar could not
  take (it was down, or busy: 429) are kept, up to a bound, and sent with the next report.
- otherwise: appended as JSON lines to `PLATEAU_METRICS_FILE` (default /plateau/metrics.jsonl).
"""

from __future__ import annotations

import json
import os
import reprlib
import stat
import sys
import time
import urllib.error
import urllib.request
import warnings
from types import FrameType
from typing import SupportsFloat

# The trainer's side of the contract in plateau_sidecar.protocol, which this distribution cannot
# import (it has no dependencies); tests/unit/test_client.py checks that the two agree.
ENV_METRICS_FILE = "PLATEAU_METRICS_FILE"
ENV_PUSH_URL = "PLATEAU_PUSH_URL"
ENV_STOP_FILE = "PLATEAU_STOP_FILE"
DEFAULT_METRICS_FILE = "/plateau/metrics.jsonl"
DEFAULT_STOP_FILE = "/etc/plateau/stop"
MAX_STEP = 2**53  # steps are whole numbers below this: each is exact as a Prometheus float

PUSH_TIMEOUT_SECONDS = 2.0
MAX_PENDING_RECORDS = 10_000
MAX_STOP_BYTES = 256 * 1024  # Kubernetes' bound on all of a pod's annotations together

_warned: set[str] = set()


def _warn_once(kind: str, message: str) -> None:
    if kind not in _warned:
        _warned.add(kind)
        warnings.warn(
            f"plateau: {message} (training goes on; this is reported once)", RuntimeWarning, stacklevel=_outside()
        )


def _describe(value: object) -> str:
    """A short repr for a warning; never raises (a broken __repr__, an int of 5,000 digits)."""
    try:
        return reprlib.repr(value)
    except Exception:
        return f"a {type(value).__name__}"


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
        self._pending: list[dict[str, object]] = []

    def report(self, step: int, **metrics: SupportsFloat) -> None:
        """Never raises for a bad step or value: a bad step drops the report, a bad value the
        metric, each with a warning given once (the sidecar would refuse either)."""
        try:
            whole_step = int(step)
        except Exception:  # TypeError, ValueError (NaN), OverflowError (inf), or a broken __int__
            whole_step = -1
        if not 0 <= whole_step < MAX_STEP:
            _warn_once("step", f"step {_describe(step)} is not an integer in [0, 2**53); the report is dropped")
            return
        record: dict[str, object] = {"step": whole_step}
        for name, value in metrics.items():
            try:
                record[name] = float(value)  # numpy scalars and 0-d tensors too
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
        self._pending.append(record)
        if len(self._pending) > MAX_PENDING_RECORDS:
            del self._pending[0]
            _warn_once("dropped", f"more than {MAX_PENDING_RECORDS} reports could not be pushed; dropping the oldest")
        try:
            request = urllib.request.Request(  # a URL without a scheme raises ValueError here
                self.push_url,  # type: ignore[arg-type]
                data=json.dumps(self._pending).encode(),
                headers={"Content-Type": "application/json"},
                method="POST",
            )
            with urllib.request.urlopen(request, timeout=PUSH_TIMEOUT_SECONDS):
                pass
        except urllib.error.HTTPError as e:
            if e.code == 400:  # the sidecar will never take these records: do not resend them
                self._pending.clear()
            elif e.code == 413:  # too many kept at once: the older half goes, so the next push can fit
                del self._pending[: max(1, len(self._pending) // 2)]
            _warn_once(f"http:{e.code}", f"the sidecar at {self.push_url} answered {e.code} {e.reason}")
            return
        except (OSError, ValueError) as e:  # URLError, timeouts, resets; ValueError: a bad URL
            _warn_once("push", f"cannot push metrics to {self.push_url}: {e}")
            return
        self._pending.clear()


_reporter: Reporter | None = None


def _default_reporter() -> Reporter:
    """The reporter for the current environment, rebuilt when the environment changes."""
    global _reporter
    file, url = os.environ.get(ENV_METRICS_FILE) or None, os.environ.get(ENV_PUSH_URL) or None
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

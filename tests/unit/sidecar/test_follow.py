"""Following a file like `tail -F`: missing, partial, rotated, truncated, over-long."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from plateau_sidecar.follow import FileFollower
from plateau_sidecar.records import jsonl_sink
from plateau_sidecar.store import BadInput, MetricStore


def line(step: int, value: float = 1.0) -> bytes:
    return json.dumps({"step": step, "m": value}).encode() + b"\n"


class Fixture:
    def __init__(self, path: Path, max_line_bytes: int = 1024) -> None:
        self.path = path
        self.store = MetricStore("tj")
        self.follower = FileFollower(str(path), jsonl_sink(self.store), self.store, max_line_bytes=max_line_bytes)

    def append(self, data: bytes) -> None:
        with self.path.open("ab") as f:
            f.write(data)

    def drain(self) -> None:
        for _ in range(100):
            if not self.follower.poll():
                return
        raise AssertionError("the follower never reached the end of its input")

    @property
    def steps(self) -> int:
        series = self.store.snapshot().series
        return series["m"].reports if "m" in series else 0

    def bad(self, kind: BadInput) -> int:
        return self.store.snapshot().bad_input[kind]


@pytest.fixture
def fx(tmp_path: Path) -> Fixture:
    return Fixture(tmp_path / "metrics.jsonl")


def test_waits_for_the_file_and_counts_its_absence_once(fx: Fixture) -> None:
    for _ in range(5):
        fx.drain()
    assert fx.bad(BadInput.MISSING_FILE) == 1 and fx.steps == 0
    fx.append(line(1) + line(2))
    fx.drain()
    assert fx.steps == 2


def test_a_partial_last_line_waits_for_its_end(fx: Fixture) -> None:
    fx.append(line(1) + b'{"step": 2, "m"')
    fx.drain()
    assert fx.steps == 1
    fx.append(b": 0.5}\n")
    fx.drain()
    assert fx.steps == 2 and sum(fx.store.snapshot().bad_input.values()) == 0


def test_rotation_reads_the_old_file_to_its_end_then_the_new_one(fx: Fixture) -> None:
    fx.append(line(1))
    fx.drain()
    with fx.path.open("ab") as writer:  # the trainer still holds the old file
        os.rename(fx.path, str(fx.path) + ".1")
        fx.drain()
        writer.write(line(2) + b'{"step": 3, "m": 1}')  # its last line has no newline
    fx.append(line(4))  # a new file at the same path
    fx.drain()
    assert fx.steps == 4
    fx.append(line(5))
    fx.drain()
    assert fx.steps == 5 and sum(fx.store.snapshot().bad_input.values()) == 0


def test_a_deleted_file_is_waited_for_again(fx: Fixture) -> None:
    fx.append(line(1))
    fx.drain()
    fx.path.unlink()
    fx.drain()
    fx.append(line(2))
    fx.drain()
    assert fx.steps == 2


def test_truncation_restarts_from_the_top(fx: Fixture) -> None:
    fx.append(line(1) + line(2) + line(3))
    fx.drain()
    fx.path.write_bytes(b"")
    fx.drain()
    fx.append(line(4))
    fx.drain()
    assert fx.steps == 4 and fx.bad(BadInput.TRUNCATED_FILE) == 1


def test_copytruncate_hole_left_by_a_writer_at_its_old_offset_is_skipped(fx: Fixture) -> None:
    fx.append(line(1) + line(2))
    fx.drain()
    offset = fx.path.stat().st_size
    os.truncate(fx.path, 0)  # logrotate's copytruncate
    fx.drain()
    with fx.path.open("r+b") as writer:  # a writer without O_APPEND carries on at its offset
        writer.seek(offset)
        writer.write(line(3))
    fx.drain()
    snap = fx.store.snapshot()
    assert fx.steps == 3 and snap.bad_input[BadInput.MALFORMED_JSON] == 0


def test_over_long_lines_are_dropped_and_counted_once_each(tmp_path: Path) -> None:
    fx = Fixture(tmp_path / "metrics.jsonl", max_line_bytes=100)
    fx.append(line(1) + b'{"step": 2, "m": 1, "pad": "' + b"x" * 200 + b'"}\n' + line(3))
    fx.drain()
    assert fx.steps == 2 and fx.bad(BadInput.LINE_TOO_LONG) == 1
    # A long line arriving in pieces, over several polls, without a newline for a while.
    for _ in range(5):
        fx.append(b"y" * 60)
        fx.drain()
    fx.append(b"y" * 10 + b"\n" + line(4))
    fx.drain()
    assert fx.steps == 3 and fx.bad(BadInput.LINE_TOO_LONG) == 2
    assert fx.bad(BadInput.MALFORMED_JSON) == 0


def test_stopping_reads_what_is_left(fx: Fixture) -> None:
    fx.follower.poll_interval = 60.0  # without the final drain, nothing below would be read
    stop = threading.Event()
    fx.append(line(1))
    thread = threading.Thread(target=fx.follower.run, args=(stop,))
    thread.start()
    fx.append(b"".join(line(i) for i in range(2, 1000)))
    stop.set()
    thread.join(timeout=10)
    assert not thread.is_alive() and fx.steps == 999



def wait_for(predicate: Callable[[], object]) -> None:
    for _ in range(500):
        if predicate():
            return
        threading.Event().wait(0.01)
    raise AssertionError("timed out")


def test_input_that_once_killed_the_reader_thread_is_counted_and_reading_goes_on(tmp_path: Path) -> None:
    fx = Fixture(tmp_path / "metrics.jsonl", max_line_bytes=200_000)
    stop = threading.Event()
    thread = threading.Thread(target=fx.follower.run, args=(stop,))
    thread.start()
    fx.append(b'{"step": 1, "m": 1' + b"0" * 400 + b"}\n" + b"[" * 100_000 + b"\n" + line(2))
    wait_for(lambda: fx.steps)
    stop.set()
    thread.join(timeout=10)
    assert fx.steps == 1 and fx.follower.failure is None
    assert fx.bad(BadInput.NON_NUMERIC) == 1 and fx.bad(BadInput.MALFORMED_JSON) == 1


def test_an_unexpected_failure_in_one_poll_is_counted_and_following_goes_on(tmp_path: Path) -> None:
    store = MetricStore("tj")
    sink = jsonl_sink(store)
    batches: list[list[bytes]] = []

    def failing_once(lines: list[bytes]) -> None:
        batches.append(lines)
        if len(batches) == 1:
            raise RuntimeError("a bug in one batch")
        sink(lines)

    path = tmp_path / "metrics.jsonl"
    follower = FileFollower(str(path), failing_once, store, poll_interval=0.01)
    stop = threading.Event()
    thread = threading.Thread(target=follower.run, args=(stop,))
    thread.start()
    path.write_bytes(line(1))
    wait_for(lambda: batches)
    with path.open("ab") as f:
        f.write(line(2))
    wait_for(lambda: "m" in store.snapshot().series)
    assert thread.is_alive()
    stop.set()
    thread.join(timeout=10)
    snap = store.snapshot()
    assert snap.series["m"].step == 2 and snap.bad_input[BadInput.READ_ERROR] == 1
    assert follower.failure is None and follower.failed_polls == 1

"""The trainer's output: copied byte for byte to its log, and shown line by line as a terminal
would show it, in bounded memory whatever the lines."""

from __future__ import annotations

import sys
import tracemalloc
from pathlib import Path

import pytest

from plateau.local.metrics import MAX_LINE_BYTES
from plateau.local.processes import Trainer, visible_lines


@pytest.mark.parametrize(("chunks", "expected"), [
    ([b"a\n", b"\n", b"b"], ["a", "", "b"]),  # an empty line stays; the last needs no newline
    ([b"epoch 1\r\n"], ["epoch 1"]),  # CRLF
    ([b" 10%\r 50%\r", b"100%\r\n"], ["100%"]),  # a progress bar: its last drawing
    ([b" 10%\r 50%\rError: boom"], ["Error: boom"]),
    ([b" 10%\r 5", b"0%\r"], [" 50%"]),  # a drawing split across reads
    ([b"abcdef\rxy", b"z\n"], ["xyz"]),
    ([b"abcdefgh", b"ijklmn\n", b"op"], ["abcdefghijkl", "op"]),  # cut at the limit, the rest of the line dropped
    ([b"\xc3\xa9t\xc3\xa9\n"], ["\u00e9t\u00e9"]),
])
def test_visible_lines(chunks: list[bytes], expected: list[str]) -> None:
    assert list(visible_lines(chunks, limit=12)) == expected


def test_a_line_that_never_ends_costs_bounded_memory(tmp_path: Path) -> None:
    # 40 MB of progress bar redraws without a newline, then a failure on the same line.
    script = ("import sys\nfor i in range(40): sys.stdout.buffer.write(b'x' * 1_000_000 + b'\\r')\n"
              "sys.stdout.buffer.write(b'Error: boom'); sys.stdout.flush(); raise SystemExit(1)")
    lines: list[str] = []
    log = tmp_path / "trainer.log"
    tracemalloc.start()
    try:
        trainer = Trainer([sys.executable, "-c", script], {}, log, lines.append)
        assert trainer.reap() == 1
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * MAX_LINE_BYTES + 2_000_000, f"reading the output took {peak / 1e6:.0f} MB"
    assert lines == list(trainer.tail) == ["Error: boom"]
    assert log.read_bytes() == (b"x" * 1_000_000 + b"\r") * 40 + b"Error: boom"  # the log has every byte


def test_a_long_line_is_cut_for_display(tmp_path: Path) -> None:
    script = "import sys; sys.stdout.write('y' * 300_000 + '\\nlast')"
    lines: list[str] = []
    trainer = Trainer([sys.executable, "-c", script], {}, tmp_path / "trainer.log", lines.append)
    assert trainer.reap() == 0
    assert lines == ["y" * MAX_LINE_BYTES, "last"]
    assert (tmp_path / "trainer.log").stat().st_size == 300_005

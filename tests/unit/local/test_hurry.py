"""Ctrl-C during the local stop handshake: the first one ends the grace period (SIGTERM now) but
keeps the termination period before SIGKILL, so a trainer can still checkpoint on SIGTERM; only
the next one kills at once."""

from __future__ import annotations

import signal
from pathlib import Path

from plateau.local.processes import Handshake


class Recorder:
    def __init__(self) -> None:
        self.signals: list[signal.Signals] = []

    def signal(self, signum: signal.Signals) -> None:
        self.signals.append(signum)


def test_hurry_sends_sigterm_now_and_sigkill_after_the_termination_period(tmp_path: Path) -> None:
    trainer = Recorder()
    handshake = Handshake.begin(trainer, tmp_path / "stop", "Manual", grace=5.0, kill_after=5.0, now=100.0)
    said = handshake.hurry(101.0)
    assert "sent SIGTERM" in said and "SIGKILL in 5s" in said
    assert trainer.signals == [signal.SIGTERM]
    assert handshake.advance(101.05) is None  # the next tick: no SIGKILL yet
    assert handshake.advance(105.9) is None
    assert "sent SIGKILL" in (handshake.advance(106.0) or "")
    assert trainer.signals == [signal.SIGTERM, signal.SIGKILL]


def test_after_the_grace_period_the_first_hurry_only_says_when_sigkill_comes(tmp_path: Path) -> None:
    trainer = Recorder()
    handshake = Handshake.begin(trainer, tmp_path / "stop", "Plateau", grace=1.0, kill_after=5.0, now=100.0)
    assert "sent SIGTERM" in (handshake.advance(101.0) or "")
    assert "SIGKILL in 3.0s" in handshake.hurry(103.0)
    assert trainer.signals == [signal.SIGTERM]
    assert "sent SIGKILL" in handshake.hurry(103.5)  # the next one kills at once
    assert handshake.hurry(104.0) == "SIGKILL was sent already"
    assert trainer.signals == [signal.SIGTERM, signal.SIGKILL]

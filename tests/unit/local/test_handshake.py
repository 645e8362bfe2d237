"""The local stop handshake's schedule: request, SIGTERM after the grace period, SIGKILL after
the termination period; a second Ctrl-C hurries it."""

from __future__ import annotations

import signal
from pathlib import Path

from plateau.local.processes import Handshake, describe_exit, exit_status


class FakeTrainer:
    def __init__(self) -> None:
        self.signals: list[signal.Signals] = []

    def signal(self, signum: signal.Signals) -> None:
        self.signals.append(signum)


def _begin(tmp_path: Path, grace: float = 10.0, kill_after: float = 5.0) -> tuple[Handshake, FakeTrainer]:
    trainer = FakeTrainer()
    handshake = Handshake.begin(trainer, tmp_path / "stop", "Plateau", grace, kill_after, now=100.0)
    return handshake, trainer


def test_request_then_sigterm_then_sigkill(tmp_path: Path) -> None:
    handshake, trainer = _begin(tmp_path)
    assert (tmp_path / "stop").read_text() == "Plateau\n"  # what client.should_stop() reads
    assert handshake.advance(109.9) is None and trainer.signals == []
    assert "SIGTERM" in (handshake.advance(110.0) or "")
    assert handshake.advance(114.9) is None
    assert "SIGKILL" in (handshake.advance(115.0) or "")
    assert handshake.advance(200.0) is None
    assert trainer.signals == [signal.SIGTERM, signal.SIGKILL]
    assert handshake.summary(-9, 115.2) == "the trainer was ended by SIGKILL 15.2s after the stop request (signals sent: SIGTERM, SIGKILL)"


def test_a_trainer_that_exits_in_time_gets_no_signal(tmp_path: Path) -> None:
    handshake, trainer = _begin(tmp_path)
    assert handshake.summary(0, 103.0) == "the trainer exited with code 0 3.0s after the stop request (signals sent: none)"
    assert trainer.signals == []


def test_hurry_sends_the_next_signal_now(tmp_path: Path) -> None:
    handshake, trainer = _begin(tmp_path)
    assert "SIGTERM" in (handshake.hurry(101.0) or "")
    assert "SIGKILL" in (handshake.hurry(101.5) or "")
    assert trainer.signals == [signal.SIGTERM, signal.SIGKILL]


def test_exit_codes_read_like_a_shell() -> None:
    assert exit_status(1) == 1 and exit_status(-signal.SIGINT) == 130 and exit_status(-signal.SIGKILL) == 137
    assert describe_exit(-signal.SIGTERM) == "was ended by SIGTERM" and describe_exit(3) == "exited with code 3"

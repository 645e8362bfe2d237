"""The test suite's port picker: what its servers are handed must still be free when they bind."""

from __future__ import annotations

import socket

import pytest

from tests.support import prometheus
from tests.support.prometheus import LOWEST_PORT, ephemeral_low, free_port


def test_ports_lie_below_the_ephemeral_range_and_are_never_handed_out_twice() -> None:
    ports = [free_port() for _ in range(200)]
    assert len(set(ports)) == len(ports)
    assert all(LOWEST_PORT <= p < ephemeral_low() for p in ports)


def test_a_span_is_consecutive_free_ports_and_none_is_handed_out_again() -> None:
    first = free_port(span=2)
    for port in (first, first + 1):
        with socket.socket() as s:
            s.bind(("0.0.0.0", port))
    assert not {first, first + 1} & {free_port() for _ in range(200)}


def test_only_ports_nobody_holds_are_handed_out_until_none_is_left(monkeypatch: pytest.MonkeyPatch) -> None:
    window = range(LOWEST_PORT, LOWEST_PORT + 40)
    monkeypatch.setattr(prometheus, "ephemeral_low", lambda: window.stop)
    held = []
    try:
        for port in window[::2]:  # a listener on every other port of the window
            s = socket.socket()
            try:
                s.bind(("127.0.0.1", port))
                s.listen()
                held.append(s)
            except OSError:  # something on this machine holds it already
                s.close()
        handed = []
        with pytest.raises(RuntimeError, match="no 1 free consecutive ports"):
            for _ in range(len(window) + 1):  # more than the window holds
                handed.append(prometheus.free_port())
        assert handed and not {s.getsockname()[1] for s in held} & set(handed)
        assert set(handed) <= set(window[1::2])
    finally:
        for s in held:
            s.close()

"""The operator's settings: the Prometheus query timeout flag and its environment variable."""

from __future__ import annotations

import pytest

from plateau.config import Settings, parse_settings
from plateau.runtime import Runtime


def test_prometheus_timeout_defaults_to_ten_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PLATEAU_PROMETHEUS_TIMEOUT", raising=False)
    assert parse_settings([]).prometheus_timeout == Settings().prometheus_timeout == 10.0


def test_prometheus_timeout_from_flag_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLATEAU_PROMETHEUS_TIMEOUT", "2500ms")
    assert parse_settings([]).prometheus_timeout == 2.5
    assert parse_settings(["--prometheus-timeout", "1m"]).prometheus_timeout == 60.0  # the flag wins


def test_prometheus_timeout_rejects_what_is_not_a_duration() -> None:
    with pytest.raises(SystemExit):
        parse_settings(["--prometheus-timeout", "ten"])


async def test_the_runtime_gives_the_timeout_to_the_prometheus_client() -> None:
    from kubernetes import client

    runtime = Runtime(Settings(prometheus_timeout=1.5, leader_election=False), client.ApiClient())
    try:
        assert runtime.prometheus.timeout == 1.5
    finally:
        await runtime.close()

"""The operator's settings: timeouts and the like, from flags and environment variables."""

from __future__ import annotations

import json
import logging
from typing import Iterator

import pytest

from plateau.controller.config import Settings, parse_settings
from plateau.controller.main import configure_logging
from plateau.controller.runtime import Runtime


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


@pytest.mark.parametrize("flag", ["--interval", "--prometheus-timeout", "--api-timeout", "--api-connect-timeout"])
def test_intervals_and_timeouts_of_zero_are_refused(flag: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_settings([flag, "0s"])
    assert f"argument {flag}: '0s': must be above zero" in capsys.readouterr().err
    assert parse_settings([flag, "0.5s"])  # below a second is fine


def test_an_interval_of_zero_from_the_environment_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLATEAU_INTERVAL", "0m")
    with pytest.raises(SystemExit):
        parse_settings([])


async def test_the_runtime_gives_the_timeout_to_the_prometheus_client() -> None:
    from kubernetes import client

    runtime = Runtime(Settings(prometheus_timeout=1.5, leader_election=False), client.ApiClient())
    try:
        assert runtime.prometheus.timeout == 1.5
    finally:
        await runtime.close()


def test_api_timeouts_from_flags_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("PLATEAU_API_TIMEOUT", "PLATEAU_API_CONNECT_TIMEOUT"):
        monkeypatch.delenv(name, raising=False)
    assert (parse_settings([]).api_timeout, parse_settings([]).api_connect_timeout) == (10.0, 5.0)
    monkeypatch.setenv("PLATEAU_API_TIMEOUT", "30s")
    settings = parse_settings(["--api-connect-timeout", "2s"])
    assert (settings.api_timeout, settings.api_connect_timeout) == (30.0, 2.0)


def test_shutdown_timeout_from_flag_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PLATEAU_SHUTDOWN_TIMEOUT", raising=False)
    assert parse_settings([]).shutdown_timeout == 25.0
    monkeypatch.setenv("PLATEAU_SHUTDOWN_TIMEOUT", "55s")
    assert parse_settings([]).shutdown_timeout == 55.0


async def test_every_client_gets_the_api_timeouts() -> None:
    import kopf
    from kubernetes import client

    runtime = Runtime(Settings(api_timeout=3.0, api_connect_timeout=1.0), client.ApiClient())
    operator = kopf.OperatorSettings()
    runtime.configure(operator)
    try:
        assert runtime.kube.read_opts["_request_timeout"] == runtime.kube.write_opts["_request_timeout"] == (1.0, 3.0)
        assert runtime.elector is not None and runtime.elector.read_opts["_request_timeout"] == (1.0, 3.0)
        assert (operator.networking.request_timeout, operator.networking.connect_timeout) == (3.0, 1.0)
        assert operator.watching.connect_timeout == 1.0
        assert operator.watching.server_timeout and operator.watching.client_timeout > operator.watching.server_timeout
        assert operator.process.ultimate_exiting_timeout == Settings().shutdown_timeout
    finally:
        await runtime.close()


def test_log_level_and_format_from_flags_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("PLATEAU_LOG_LEVEL", "PLATEAU_LOG_FORMAT"):
        monkeypatch.delenv(name, raising=False)
    assert (parse_settings([]).log_level, parse_settings([]).log_format) == ("info", "text")
    monkeypatch.setenv("PLATEAU_LOG_FORMAT", "json")
    settings = parse_settings(["--log-level", "debug"])
    assert (settings.log_level, settings.log_format) == ("debug", "json")
    for bad in (["--log-level", "verbose"], ["--log-format", "logfmt"]):
        with pytest.raises(SystemExit):
            parse_settings(bad)


@pytest.fixture
def root_logger() -> Iterator[logging.Logger]:
    """The root logger, its handlers and levels restored afterwards."""
    root, objects = logging.getLogger(), logging.getLogger("kopf.objects")
    saved = (root.handlers[:], root.level, objects.level)
    root.handlers[:] = []
    yield root
    root.handlers[:], _, _ = saved
    root.setLevel(saved[1])
    objects.setLevel(saved[2])


def test_json_logs_are_one_object_a_line_at_the_level_asked(root_logger: logging.Logger,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("warning", "json")
    logging.getLogger("plateau.test").info("hidden")
    logging.getLogger("plateau.test").warning("stop requested")
    logging.getLogger("kopf.objects").error("patch failed", extra={"k8s_ref": {"kind": "TrainingJob", "name": "resnet"}})
    first, second = map(json.loads, capsys.readouterr().err.splitlines())
    assert first["message"] == "stop requested" and first["severity"] == "warn" and "timestamp" in first
    assert second["object"] == {"kind": "TrainingJob", "name": "resnet"}  # kopf's reference to the object
    assert root_logger.level == logging.WARNING
    assert logging.getLogger("kopf.objects").level == logging.WARNING  # never one line per watch event


def test_text_logs_keep_their_format(root_logger: logging.Logger, capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("debug", "text")
    logging.getLogger("plateau.test").debug("cycle")
    assert capsys.readouterr().err.rstrip().endswith(" DEBUG plateau.test: cycle")
    assert logging.getLogger("kopf.objects").getEffectiveLevel() == logging.DEBUG  # watch events too, when debugging

"""The sidecar's settings: the operator's environment variables, and flags that override them."""

from __future__ import annotations

import pytest

from plateau_sidecar import protocol as p
from plateau_sidecar.config import load_config, parse_address


def test_defaults_serve_metrics_on_all_interfaces_and_push_on_localhost() -> None:
    config = load_config([], env={})
    assert config.metrics_addr == ("0.0.0.0", p.DEFAULT_METRICS_PORT)
    assert config.push_addr == ("127.0.0.1", p.DEFAULT_PUSH_PORT)
    assert config.metrics_file is None and config.stdout_file is None and config.metric_names is None


def test_the_environment_configures_and_flags_override() -> None:
    env = {
        p.ENV_TRAININGJOB: "resnet-7",
        p.ENV_METRICS_FILE: "/plateau/metrics.jsonl",
        p.ENV_METRICS_ADDR: ":9000",
        p.ENV_PUSH_ADDR: "127.0.0.1:9001",
        p.ENV_STDOUT_FILE: "/plateau/train.log",
        p.ENV_STDOUT_PATTERN: r"step (?P<step>\d+) loss (?P<loss>\S+)",
        p.ENV_METRIC_NAMES: "loss, accuracy,",
    }
    config = load_config([], env=env)
    assert config.trainingjob == "resnet-7"
    assert config.metrics_addr == ("0.0.0.0", 9000) and config.push_addr == ("127.0.0.1", 9001)
    assert config.metric_names == {"loss", "accuracy"}
    assert config.stdout_pattern is not None and config.stdout_pattern.search("step 3 loss 0.5")
    overridden = load_config(["--trainingjob", "other", "--push-addr", "off", "--metric-names", ""], env=env)
    assert overridden.trainingjob == "other" and overridden.push_addr is None and overridden.metric_names is None
    assert overridden.metrics_file == "/plateau/metrics.jsonl"


def test_an_empty_variable_counts_as_unset() -> None:
    assert load_config([], env={p.ENV_METRICS_ADDR: "", p.ENV_TRAININGJOB: ""}).trainingjob == "local"


@pytest.mark.parametrize(
    "argv",
    [
        ["--metrics-addr", "nowhere"],
        ["--push-addr", "127.0.0.1:99999"],
        ["--stdout-file", "/plateau/train.log"],  # a pattern is needed too
        ["--stdout-file", "x", "--stdout-pattern", r"loss=(?P<loss>\S+)"],  # no step group
        ["--stdout-file", "x", "--stdout-pattern", r"(?P<step>\d+"],
    ],
)
def test_a_bad_setting_exits_2_with_a_message(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        load_config(argv, env={})
    assert exited.value.code == 2
    assert "plateau-sidecar: error:" in capsys.readouterr().err


def test_ipv6_addresses() -> None:
    assert parse_address("[::]:9464") == ("::", 9464)


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["--poll-interval", "nan"], "--poll-interval"),
        (["--poll-interval", "-1"], "--poll-interval"),
        (["--max-inflight", "0"], "--max-inflight"),
        (["--max-line-bytes", "0"], "--max-line-bytes"),
        (["--max-journal-bytes", "0"], "--max-journal-bytes"),  # not a journal that silently takes nothing
        (["--linger", "inf"], "--linger"),
        (["--metrics-addr", ":70000"], "--metrics-addr"),
        (["--metrics-addr", ":٣"], "--metrics-addr"),  # a digit to str.isdigit(), not to a port
        (["--metric-names", ",".join(f"m{i}" for i in range(11)), "--max-metrics", "10"], "--metric-names"),
    ],
)
def test_a_bound_out_of_range_exits_2_with_one_line_naming_the_flag(
    argv: list[str], named: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        load_config(argv, env={})
    assert exited.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and named in err[0], err


def test_a_variable_out_of_range_is_named_with_its_flag(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        load_config([], env={p.ENV_METRICS_ADDR: ":70000"})
    assert f"--metrics-addr [{p.ENV_METRICS_ADDR}]" in capsys.readouterr().err

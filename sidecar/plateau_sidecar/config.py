"""The sidecar's configuration: the operator's environment variables, overridden by CLI flags."""

from __future__ import annotations

import argparse
import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import NoReturn

from plateau.api.stdout_pattern import Pattern, compile_pattern

from . import protocol as p
from .follow import DEFAULT_MAX_LINE_BYTES, DEFAULT_POLL_INTERVAL
from .journal import DEFAULT_MAX_JOURNAL_BYTES
from .server import DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_INFLIGHT
from .store import DEFAULT_MAX_METRICS, MAX_METRIC_NAME_LENGTH

OFF = "off"
DEFAULT_TRAININGJOB = "local"
# Shorter than Kubernetes' default 30 s termination grace period, so the sidecar is not killed.
DEFAULT_LINGER_SECONDS = 15.0
MAX_TRAININGJOB_LENGTH = 253  # a Kubernetes object name
_PORT = re.compile(r"[0-9]{1,5}")  # ASCII digits only: str.isdigit() also takes '²' and '١'
_MiB = 1024 * 1024


@dataclass(frozen=True)
class Config:
    trainingjob: str
    metrics_addr: tuple[str, int]
    push_addr: tuple[str, int] | None  # None: no push endpoint
    metrics_file: str | None
    stdout_file: str | None
    stdout_pattern: Pattern | None
    metric_names: frozenset[str] | None  # None: every name is accepted
    spec_file: str | None = None  # the metric stop spec; None: no track is folded
    push_journal: str | None = None  # None: pushes are not journaled, and a restart loses them
    max_journal_bytes: int = DEFAULT_MAX_JOURNAL_BYTES
    poll_interval: float = DEFAULT_POLL_INTERVAL
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
    max_metrics: int = DEFAULT_MAX_METRICS
    max_push_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_inflight: int = DEFAULT_MAX_INFLIGHT
    linger_seconds: float = DEFAULT_LINGER_SECONDS
    log_level: str = "INFO"


def parse_address(text: str) -> tuple[str, int]:
    """`host:port`, `[v6]:port` or `:port` (all interfaces)."""
    host, sep, port = text.rpartition(":")
    if not sep or not _PORT.fullmatch(port) or int(port) > 65535:
        raise ValueError(f"expected host:port with a port in 0-65535, got {text!r:.80}")
    return host.strip("[]") or "0.0.0.0", int(port)


def _number(kind: Callable[[str], int | float], low: float, high: float) -> Callable[[str], int | float]:
    """An argparse type: a finite number in [low, high]. NaN, inf and 0 for a bound that must be
    positive are refused here, not discovered later as a busy loop or every request refused."""

    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except (ValueError, OverflowError):
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r:.40}") from None
        if not math.isfinite(value) or not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be within [{low:g}, {high:g}], got {text!r:.40}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its own messages
    return parse


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        """One line, no usage block: the line names the flag (a pod's log shows only that)."""
        self.exit(2, f"{self.prog}: error: {message}\n")


def _parser(env: Mapping[str, str]) -> argparse.ArgumentParser:
    def default(name: str, fallback: str | None = None) -> str | None:
        return env.get(name) or fallback  # an empty variable counts as unset

    ap = _Parser(
        prog="plateau-sidecar",
        description="Export a trainer's metrics to Prometheus. Flags override PLATEAU_* variables.",
    )
    ap.add_argument(
        "--trainingjob",
        default=default(p.ENV_TRAININGJOB, DEFAULT_TRAININGJOB),
        help=f"value of the '{p.LABEL_TRAININGJOB}' label [{p.ENV_TRAININGJOB}]",
    )
    ap.add_argument(
        "--metrics-addr",
        default=default(p.ENV_METRICS_ADDR, p.DEFAULT_METRICS_ADDR),
        help=f"host:port serving /metrics [{p.ENV_METRICS_ADDR}]",
    )
    ap.add_argument(
        "--push-addr",
        default=default(p.ENV_PUSH_ADDR, p.DEFAULT_PUSH_ADDR),
        help=f"host:port of the push endpoint, or '{OFF}' [{p.ENV_PUSH_ADDR}]",
    )
    ap.add_argument(
        "--metrics-file", default=default(p.ENV_METRICS_FILE), help=f"JSONL file to follow [{p.ENV_METRICS_FILE}]"
    )
    ap.add_argument(
        "--stdout-file",
        default=default(p.ENV_STDOUT_FILE),
        help=f"log file the trainer's command writes, matched by --stdout-pattern [{p.ENV_STDOUT_FILE}]",
    )
    ap.add_argument(
        "--stdout-pattern",
        default=default(p.ENV_STDOUT_PATTERN),
        help=f"regex with named groups: 'step' and one per metric [{p.ENV_STDOUT_PATTERN}]",
    )
    ap.add_argument(
        "--spec-file",
        default=default(p.ENV_SPEC_FILE),
        help=f"file holding the metric stop spec to fold the monitored metric under [{p.ENV_SPEC_FILE}]",
    )
    ap.add_argument(
        "--push-journal",
        default=default(p.ENV_PUSH_JOURNAL),
        help=f"file accepted pushes are appended to, and taken in again at start [{p.ENV_PUSH_JOURNAL}]",
    )
    ap.add_argument("--max-journal-bytes", type=_number(int, 1, 16 * 1024 * _MiB), default=DEFAULT_MAX_JOURNAL_BYTES,
                    help="the push journal stops growing here")
    ap.add_argument(
        "--metric-names",
        default=default(p.ENV_METRIC_NAMES, ""),
        help=f"comma-separated allow-list of metric names; empty = all [{p.ENV_METRIC_NAMES}]",
    )
    ap.add_argument("--poll-interval", type=_number(float, 0.001, 3600), default=DEFAULT_POLL_INTERVAL,
                    help="seconds between file polls")
    ap.add_argument(
        "--max-line-bytes", type=_number(int, 1, 64 * _MiB), default=DEFAULT_MAX_LINE_BYTES,
        help="longer lines are dropped and counted"
    )
    ap.add_argument("--max-metrics", type=_number(int, 1, 100_000), default=DEFAULT_MAX_METRICS,
                    help="bound on distinct metric names")
    ap.add_argument("--max-push-bytes", type=_number(int, 1, 256 * _MiB), default=DEFAULT_MAX_BODY_BYTES,
                    help="bound on a push body")
    ap.add_argument(
        "--max-inflight",
        type=_number(int, 1, 1024),
        default=DEFAULT_MAX_INFLIGHT,
        help="requests served at once per endpoint; more are answered 429",
    )
    ap.add_argument(
        "--linger",
        type=_number(float, 0, 3600),
        default=DEFAULT_LINGER_SECONDS,
        help="on SIGTERM, wait up to this long for a scrape of the last reports",
    )
    ap.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return ap


def _trainingjob(text: str) -> str:
    if not 0 < len(text) <= MAX_TRAININGJOB_LENGTH or not text.isprintable():
        raise ValueError(f"must be 1 to {MAX_TRAININGJOB_LENGTH} printable characters, got {text!r:.80}")
    text.encode()  # a lone surrogate (from undecodable argv bytes) would fail every scrape
    return text


def _metric_names(text: str, max_metrics: int) -> frozenset[str]:
    names = frozenset(n.strip() for n in text.split(",") if n.strip())
    if len(names) > max_metrics:
        raise ValueError(f"{len(names)} names, more than --max-metrics ({max_metrics})")
    long = next((n for n in names if len(n) > MAX_METRIC_NAME_LENGTH), None)
    if long is not None:
        raise ValueError(f"the name {long[:40]!r}... is longer than {MAX_METRIC_NAME_LENGTH} characters")
    return names


def _setting(ap: argparse.ArgumentParser, flag: str, env: str | None, parse: Callable[[], object]) -> object:
    """`parse()`, or exit 2 with one line naming the flag (and the variable it may come from)."""
    try:
        return parse()
    except (ValueError, UnicodeError, re.error) as e:
        ap.error(f"{flag}{f' [{env}]' if env else ''}: {e}")


def load_config(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Parse flags over the environment; exits with status 2 and one line on a bad setting."""
    env = os.environ if env is None else env
    ap = _parser(env)
    args = ap.parse_args(argv)
    if bool(args.stdout_file) != bool(args.stdout_pattern):
        ap.error("--stdout-file and --stdout-pattern go together")
    push = args.push_addr != OFF
    return Config(
        trainingjob=_setting(ap, "--trainingjob", p.ENV_TRAININGJOB, lambda: _trainingjob(args.trainingjob)),
        metrics_addr=_setting(ap, "--metrics-addr", p.ENV_METRICS_ADDR, lambda: parse_address(args.metrics_addr)),
        push_addr=_setting(ap, "--push-addr", p.ENV_PUSH_ADDR, lambda: parse_address(args.push_addr)) if push else None,
        metrics_file=args.metrics_file,
        stdout_file=args.stdout_file,
        stdout_pattern=_setting(ap, "--stdout-pattern", p.ENV_STDOUT_PATTERN, lambda: compile_pattern(args.stdout_pattern))
        if args.stdout_pattern else None,
        metric_names=_setting(ap, "--metric-names", p.ENV_METRIC_NAMES,
                              lambda: _metric_names(args.metric_names, args.max_metrics)) or None,
        spec_file=args.spec_file,
        push_journal=args.push_journal,
        max_journal_bytes=args.max_journal_bytes,
        poll_interval=args.poll_interval,
        max_line_bytes=args.max_line_bytes,
        max_metrics=args.max_metrics,
        max_push_bytes=args.max_push_bytes,
        max_inflight=args.max_inflight,
        linger_seconds=args.linger,
        log_level=args.log_level,
    )

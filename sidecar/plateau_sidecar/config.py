"""The sidecar's configuration: the operator's environment variables, overridden by CLI flags."""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from . import protocol as p
from .follow import DEFAULT_MAX_LINE_BYTES, DEFAULT_POLL_INTERVAL
from .journal import DEFAULT_MAX_JOURNAL_BYTES
from .records import compile_pattern
from .server import DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_INFLIGHT
from .store import DEFAULT_MAX_METRICS

OFF = "off"
DEFAULT_TRAININGJOB = "local"
# Shorter than Kubernetes' default 30 s termination grace period, so the sidecar is not killed.
DEFAULT_LINGER_SECONDS = 15.0


@dataclass(frozen=True)
class Config:
    trainingjob: str
    metrics_addr: tuple[str, int]
    push_addr: tuple[str, int] | None  # None: no push endpoint
    metrics_file: str | None
    stdout_file: str | None
    stdout_pattern: re.Pattern[str] | None
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
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"expected host:port, got {text!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


def _parser(env: Mapping[str, str]) -> argparse.ArgumentParser:
    def default(name: str, fallback: str | None = None) -> str | None:
        return env.get(name) or fallback  # an empty variable counts as unset

    ap = argparse.ArgumentParser(
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
    ap.add_argument("--max-journal-bytes", type=int, default=DEFAULT_MAX_JOURNAL_BYTES,
                    help="the push journal stops growing here")
    ap.add_argument(
        "--metric-names",
        default=default(p.ENV_METRIC_NAMES, ""),
        help=f"comma-separated allow-list of metric names; empty = all [{p.ENV_METRIC_NAMES}]",
    )
    ap.add_argument("--poll-interval", type=float, default=DEFAULT_POLL_INTERVAL, help="seconds between file polls")
    ap.add_argument(
        "--max-line-bytes", type=int, default=DEFAULT_MAX_LINE_BYTES, help="longer lines are dropped and counted"
    )
    ap.add_argument("--max-metrics", type=int, default=DEFAULT_MAX_METRICS, help="bound on distinct metric names")
    ap.add_argument("--max-push-bytes", type=int, default=DEFAULT_MAX_BODY_BYTES, help="bound on a push body")
    ap.add_argument(
        "--max-inflight",
        type=int,
        default=DEFAULT_MAX_INFLIGHT,
        help="requests served at once per endpoint; more are answered 429",
    )
    ap.add_argument(
        "--linger",
        type=float,
        default=DEFAULT_LINGER_SECONDS,
        help="on SIGTERM, wait up to this long for a scrape of the last reports",
    )
    ap.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return ap


def load_config(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Parse flags over the environment; exits with status 2 and a message on a bad setting."""
    env = os.environ if env is None else env
    ap = _parser(env)
    args = ap.parse_args(argv)
    try:
        if bool(args.stdout_file) != bool(args.stdout_pattern):
            raise ValueError("--stdout-file and --stdout-pattern go together")
        names = frozenset(n.strip() for n in args.metric_names.split(",") if n.strip())
        return Config(
            trainingjob=args.trainingjob,
            metrics_addr=parse_address(args.metrics_addr),
            push_addr=None if args.push_addr == OFF else parse_address(args.push_addr),
            metrics_file=args.metrics_file,
            stdout_file=args.stdout_file,
            stdout_pattern=compile_pattern(args.stdout_pattern) if args.stdout_pattern else None,
            metric_names=names or None,
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
    except (ValueError, re.error) as e:
        ap.error(str(e))

"""Go-style duration strings ("90s", "1h30m"), the format Kubernetes uses for metav1.Duration.

Only non-negative durations with units ms, s, m and h are accepted: CEL's duration() parses
exactly these, so the CRD can validate them at `kubectl apply`.
"""

from __future__ import annotations

import re
from functools import lru_cache

DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"
_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


@lru_cache(maxsize=4096)
def parse_duration(text: str) -> float:
    """Seconds in a duration string; ValueError with a readable message otherwise."""
    if not isinstance(text, str) or not re.fullmatch(DURATION_PATTERN, text.strip()):
        if isinstance(text, str) and text.strip().startswith("-"):
            raise ValueError(f"negative durations are not allowed: {text!r}")
        raise ValueError(
            f"{text!r} is not a duration; use a number with a unit ms, s, m or h, e.g. 90s, 30m, 1h30m"
        )
    return sum(float(n) * _UNIT_SECONDS[u] for n, u in _PART.findall(text.strip()))


class ParsedDuration(str):
    """A duration as the user wrote it ("1h30m"), which it stays on the wire, carrying its
    `seconds`: parsed once, when the spec is validated, so the engine takes numbers."""

    seconds: float

    def __new__(cls, text: str) -> ParsedDuration:
        duration = super().__new__(cls, text)
        duration.seconds = parse_duration(text)
        return duration

    def __getnewargs__(self) -> tuple[str]:  # pickle and copy: rebuilt from the text
        return (str(self),)


def format_duration(seconds: float) -> str:
    """The shortest exact-to-the-second Go-style form, e.g. 5400 -> '1h30m'."""
    total = int(round(max(seconds, 0.0)))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{v}{u}" for v, u in ((hours, "h"), (minutes, "m"), (secs, "s")) if v]
    return "".join(parts) or "0s"


def format_milliseconds(ms: int) -> str:
    """Prometheus' duration form, exact to the millisecond: 5_400_000 -> '1h30m', 1500 -> '1s500ms'."""
    parts = []
    for unit, size in (("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1)):
        count, ms = divmod(ms, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"

"""Framework callbacks; each module imports its framework, so import only the one you use.

What they share lives here, on the standard library: which logged metrics an evaluation
reports, and the line a stop prints.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping


def chosen(names: Iterable[str] | None) -> frozenset[str] | None:
    """A callback's `metrics` argument: the names to report, or None for its framework's default."""
    if names is None:
        return None
    if isinstance(names, str):  # metrics="val_loss" would otherwise be a set of letters
        return frozenset([names])
    return frozenset(names)


def evaluation(logged: Mapping[str, object], names: frozenset[str] | None, prefix: str) -> dict[str, float]:
    """The logged metrics one evaluation reports: those named, or else every one whose name
    starts with `prefix` (the framework's mark of an evaluation metric). Only single numbers:
    a one-element tensor counts, text or a vector is left out."""
    values: dict[str, float] = {}
    for name, value in logged.items():
        if (name in names) if names is not None else name.startswith(prefix):
            number = _number(value)
            if number is not None:
                values[name] = number
    return values


def _number(value: object) -> float | None:
    if isinstance(value, (str, bytes)):
        return None
    try:
        return float(value)  # type: ignore[arg-type]  # numpy scalars, 0-d and 1-element tensors
    except (TypeError, ValueError, RuntimeError, OverflowError):
        return None


def announce(reason: str, checkpoint: str | None) -> None:
    """One line on stderr, so the trainer's log says why training ended early."""
    saved = f"; checkpoint: {checkpoint}" if checkpoint else ""
    print(f"plateau: stop requested ({reason}){saved}", file=sys.stderr, flush=True)

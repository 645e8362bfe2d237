"""Bad input from a user's file, flag or manifest: one line naming the file, line and column or
field. Pure; the command line, the local runner and the operator's spec check all word it here."""

from __future__ import annotations

from pydantic import ValidationError


class InputError(Exception):
    """Bad input, with a message naming the file, line and column or field."""


def format_validation_error(err: ValidationError, prefix: str = "") -> str:
    """A model's validation errors on one line, each naming its field under `prefix`."""
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"] if not str(p).startswith("function-"))
        where = ".".join(p for p in (prefix, loc) if p)
        lines.append(f"{where or '(root)'}: {e['msg']}")
    return "; ".join(lines)

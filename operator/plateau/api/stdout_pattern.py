"""What a stdout pattern must be: one function that the spec's validation and the sidecar's flag
both compile with, so a pattern the API accepts is one the sidecar starts with. Pure."""

from __future__ import annotations

import regex

STEP_GROUP = "step"  # the named group for the step (plateau_sidecar.store.STEP_KEY)
MAX_PATTERN_LENGTH = 4096

Pattern = regex.Pattern


def compile_pattern(pattern: str) -> Pattern:
    """Compile a stdout pattern; it must name a `step` group and at least one metric group.
    Raises ValueError (`regex.error` is one) with the reason."""
    if len(pattern) > MAX_PATTERN_LENGTH:
        raise ValueError(f"the stdout pattern is longer than {MAX_PATTERN_LENGTH} characters")
    try:
        compiled = regex.compile(pattern)
    except regex.error as e:
        raise ValueError(f"not a valid regex: {e}") from None
    groups = set(compiled.groupindex)
    if STEP_GROUP not in groups:
        raise ValueError(f"the stdout pattern needs a named group (?P<{STEP_GROUP}>...)")
    if not groups - {STEP_GROUP}:
        raise ValueError("the stdout pattern needs at least one named group for a metric")
    return compiled

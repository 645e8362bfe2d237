"""Turning raw input (JSONL lines, log lines, push bodies) into store updates."""

from __future__ import annotations

import json
import re
from collections.abc import Callable

from .store import STEP_KEY, BadInput, MetricStore, RecordError, step_of

LineSink = Callable[[list[bytes]], None]


def jsonl_sink(store: MetricStore) -> LineSink:
    """Ingest complete JSONL lines: one flat record per line."""
    decode = json.JSONDecoder().decode  # a local name: this loop is the ingest hot path

    def ingest(lines: list[bytes]) -> None:
        # One UTF-8 decode for the whole batch: json parses str faster than bytes, line by line.
        texts = b"\n".join(lines).decode("utf-8", "replace").split("\n")
        with store.lock:
            for line in texts:
                try:
                    record = decode(line)
                    step = step_of(record)
                except RecordError as e:
                    store.count_bad(e.kind, str(e))
                    continue
                except (ValueError, RecursionError) as e:  # json.JSONDecodeError; nesting too deep
                    if line.strip():  # blank lines are harmless
                        store.count_bad(BadInput.MALFORMED_JSON, f"{e}: {line[:80]!r}")
                    continue
                store.add_record(step, record)

    return ingest


def compile_pattern(pattern: str) -> re.Pattern[str]:
    """Compile a stdout pattern; it must name a `step` group and at least one metric group."""
    compiled = re.compile(pattern)
    groups = set(compiled.groupindex)
    if STEP_KEY not in groups:
        raise ValueError(f"the stdout pattern needs a named group (?P<{STEP_KEY}>...)")
    if not groups - {STEP_KEY}:
        raise ValueError("the stdout pattern needs at least one named group for a metric")
    return compiled


def pattern_sink(store: MetricStore, pattern: re.Pattern[str]) -> LineSink:
    """Ingest log lines that match `pattern`; other lines are ordinary log output, not errors."""

    def ingest(lines: list[bytes]) -> None:
        with store.lock:
            for line in lines:
                match = pattern.search(line.decode("utf-8", "replace"))
                if match is None:
                    continue
                groups = match.groupdict()
                step_text = groups[STEP_KEY]
                try:
                    step = step_of({STEP_KEY: int(step_text)})  # the bounds of a JSON record's step
                except (TypeError, ValueError):  # RecordError is a ValueError
                    message = f"'step' must be an integer in [0, 2**53), got {step_text!r:.80}"
                    store.count_bad(BadInput.BAD_STEP, message)
                    continue
                store.add_strings(step, groups)

    return ingest


def ingest_payload(store: MetricStore, body: bytes, journal: Callable[[list[object]], None] | None = None) -> int:
    """Ingest a push body (one record or a list). All or nothing: every record is checked
    before any is ingested, and a record that cannot be ingested rejects the whole body, so a
    client can fix it and resend without duplicates. Field-level problems (a non-numeric value)
    are counted, not refused. Raises RecordError (already counted) for the HTTP 400 answer.
    Accepted records go to `journal` first (in the same order, under the store's lock); one
    that cannot be written is counted (`journal_error`) and the records are ingested anyway."""
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError) as e:  # RecursionError: nesting too deep
        store.report_bad(BadInput.MALFORMED_JSON, f"push body: {e}")
        raise RecordError(BadInput.MALFORMED_JSON, f"invalid JSON: {e}") from None
    records = payload if type(payload) is list else [payload]
    steps = []
    for i, record in enumerate(records):
        try:
            steps.append(step_of(record))
        except RecordError as e:
            store.report_bad(e.kind, f"push record {i}: {e}")
            raise RecordError(e.kind, f"record {i}: {e}") from None
    with store.lock:
        if journal is not None:
            try:
                journal(records)
            except OSError as e:
                store.count_bad(BadInput.JOURNAL_ERROR, f"cannot write the push journal: {e}")
        for step, record in zip(steps, records, strict=True):
            store.add_record(step, record)
    return len(records)

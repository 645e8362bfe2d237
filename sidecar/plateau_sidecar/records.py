"""Turning raw input (JSONL lines, log lines, push bodies) into store updates.

The stdout pattern is the user's regex, run on lines the trainer wrote: a pattern with nested
quantifiers can take exponential time on one crafted line. So it runs on the `regex` package,
with a time limit per line and with the GIL released (`concurrent=True`), never under the
store's lock: a line that runs out of time is counted (`pattern_timeout`) and skipped, while
/metrics, /push and signals go on being served.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import regex

from plateau.api.stdout_pattern import Pattern, compile_pattern

from .ledger import Origin
from .store import STEP_KEY, BadInput, MetricStore, RecordError, step_of

LineSink = Callable[[list[bytes]], None]
Journal = Callable[[Sequence[object], Origin | None], None]  # PushJournal.append

MAX_PUSH_RECORDS = 10_000  # the client keeps at most this many unsent reports (client.MAX_PENDING_RECORDS)
# Per line. A sane pattern matches a line of --max-line-bytes in well under a millisecond.
MATCH_TIMEOUT_SECONDS = 0.25


def jsonl_sink(store: MetricStore, pushes: bool = False) -> LineSink:
    """Ingest complete JSONL lines: one flat record per line. With `pushes` (the push journal's
    lines), a line may also be a whole push that named its origin, `[reporter, first, [records]]`:
    its records are ingested, and the ledger learns that they were taken."""
    decode = json.JSONDecoder().decode  # a local name: this loop is the ingest hot path

    def ingest(lines: list[bytes]) -> None:
        # One UTF-8 decode for the whole batch: json parses str faster than bytes, line by line.
        # Parsed before the lock is taken: a scrape waits for the ingest, never for the parse.
        parsed: list[tuple[int, dict[str, object]] | RecordError | _Taken] = []
        for line in b"\n".join(lines).decode("utf-8", "replace").split("\n"):
            try:
                record = decode(line)
                if pushes and type(record) is list:
                    parsed.extend(_journaled_push(record))
                else:
                    parsed.append((step_of(record), record))
            except RecordError as e:
                parsed.append(e)
            except (ValueError, RecursionError) as e:  # json.JSONDecodeError; nesting too deep
                if line.strip():  # blank lines are harmless
                    parsed.append(RecordError(BadInput.MALFORMED_JSON, f"{e}: {line[:80]!r}"))
        with store.lock:
            for item in parsed:
                if type(item) is tuple:
                    store.add_record(*item)
                elif type(item) is _Taken:
                    store.pushes.take(item.origin, item.count)
                else:
                    store.count_bad(item.kind, str(item))  # type: ignore[union-attr]

    return ingest


@dataclass(frozen=True)
class _Taken:
    origin: Origin
    count: int


def _journaled_push(line: list[object]) -> list[tuple[int, dict[str, object]] | _Taken]:
    """A push line of the journal as its records in order, then the ledger's note of them.
    RecordError for a line that is not one (the whole line is refused: the journal wrote it whole)."""
    match line:
        case [str() as reporter, int() as first, list() as records] if records:
            try:
                origin = Origin.from_headers(reporter, str(first))
            except ValueError as e:
                raise RecordError(BadInput.MALFORMED_JSON, f"a journaled push: {e}") from None
            assert origin is not None  # both were given
            return [*((step_of(r), r) for r in records), _Taken(origin, len(records))]
    raise RecordError(BadInput.MALFORMED_JSON, f"a journal line that is no push: {str(line)[:80]!r}")


def pattern_sink(
    store: MetricStore, pattern: Pattern, timeout: float = MATCH_TIMEOUT_SECONDS, abandon: threading.Event | None = None
) -> LineSink:
    """Ingest log lines that match `pattern`; other lines are ordinary log output, not errors.
    Every line is matched before the store's lock is taken, each within `timeout` seconds. Once
    `abandon` is set (a shutdown that has waited long enough), the lines left are dropped."""

    def ingest(lines: list[bytes]) -> None:
        matched: list[dict[str, str | None]] = []
        for done, line in enumerate(lines):
            if abandon is not None and abandon.is_set():
                store.log_once("shutdown", f"log lines left unmatched, {len(lines) - done} in this read")
                break
            try:
                match = pattern.search(line.decode("utf-8", "replace"), timeout=timeout, concurrent=True)
            except TimeoutError:
                store.report_bad(BadInput.PATTERN_TIMEOUT, f"the stdout pattern took over {timeout} s on a line;"
                                 f" skipped: {line[:80]!r}...")
                continue
            if match is not None:
                matched.append(match.groupdict())
        with store.lock:
            for groups in matched:
                step_text = groups[STEP_KEY]
                try:
                    step = step_of({STEP_KEY: int(step_text)})  # the bounds of a JSON record's step
                except (TypeError, ValueError):  # RecordError is a ValueError
                    message = f"'step' must be an integer in [0, 2**53), got {step_text!r:.80}"
                    store.count_bad(BadInput.BAD_STEP, message)
                    continue
                store.add_strings(step, groups)

    return ingest


def too_many_records(body: bytes) -> str | None:
    """Why a push body holds more objects or arrays than a push may, or None. Counted on the bytes,
    before parsing: a 1 MiB body of `[{},{},...]` parses into some 300,000 dicts (20 MB and more)."""
    for token in (b"{", b"["):
        if body.count(token) > MAX_PUSH_RECORDS:
            return f"more than {MAX_PUSH_RECORDS} records (or '{token.decode()}') in one push"
    return None


def ingest_payload(store: MetricStore, body: bytes, journal: Journal | None = None,
                   origin: Origin | None = None) -> tuple[int, int]:
    """Ingest a push body (one record or a list); returns how many records were taken, and how
    many were skipped as taken before (a resend from `origin`: plateau_sidecar.ledger).
    All or nothing: every record is checked before any is ingested, and a record that cannot be
    ingested rejects the whole body, so a client can fix it and resend without duplicates.
    Field-level problems (a non-numeric value) are counted, not refused. Raises RecordError
    (already counted) for the HTTP 400 answer. The records taken go to `journal` (in the same
    order, under the store's lock, before the push is answered); a journal that cannot be
    written is counted (`journal_error`) and the records stay ingested."""
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
    with store.lock:  # checking the ledger and taking the records are one step: a resend waits here
        skipped = store.pushes.taken_before(origin, len(records)) if origin is not None else 0
        fresh = records[skipped:]
        fresh_origin = Origin(origin.reporter, origin.first + skipped) if origin is not None else None
        taken = 0
        try:
            for step, record in zip(steps[skipped:], fresh, strict=True):
                store.add_record(step, record)
                taken += 1
        finally:  # the journal and the ledger hold exactly what the store took, even when a record failed
            if journal is not None and taken:
                try:
                    journal(fresh[:taken], fresh_origin)
                except OSError as e:
                    store.count_bad(BadInput.JOURNAL_ERROR, f"cannot write the push journal: {e}")
            if fresh_origin is not None:
                store.pushes.take(fresh_origin, taken)
        if skipped:
            store.log_once("resent", f"a push resent {skipped} records already taken; they were not taken again")
    return len(fresh), skipped

"""The push journal: accepted pushes, taken in again by a restarted sidecar."""

from __future__ import annotations

from pathlib import Path

from plateau_sidecar.journal import PushJournal, line_bound
from plateau_sidecar.ledger import Origin
from plateau_sidecar.records import ingest_payload, jsonl_sink
from plateau_sidecar.store import MetricStore


def test_a_restarted_store_takes_in_every_answered_push_again(tmp_path: Path) -> None:
    path = tmp_path / "push.jsonl"
    before, journal = MetricStore("tj"), PushJournal(str(path))
    ingest_payload(before, b'[{"step": 1, "m": 1.5}, {"step": 2, "m": NaN}]', journal.append)
    ingest_payload(before, b'{"step": 1, "m": 0.5, "n": 7}', journal.append)  # a resume, and a second metric
    after = MetricStore("tj")
    assert PushJournal(str(path)).replay(jsonl_sink(after)) == 3
    assert repr(after.snapshot().series) == repr(before.snapshot().series)


def test_text_is_written_as_utf8_and_a_lone_surrogate_as_its_escape(tmp_path: Path) -> None:
    path = tmp_path / "push.jsonl"
    before, journal = MetricStore("tj"), PushJournal(str(path))
    ingest_payload(before, '{"step": 1, "m": 1.0, "note": "é☃", "\\ud800": 2}'.encode(), journal.append)
    assert path.read_bytes() == '{"step":1,"m":1.0,"note":"é☃","\\ud800":2}\n'.encode()  # not 6 bytes an 'é'
    after = MetricStore("tj")
    assert PushJournal(str(path)).replay(jsonl_sink(after)) == 1
    rebuilt, was = after.snapshot(), before.snapshot()
    assert repr((rebuilt.series, rebuilt.bad_input)) == repr((was.series, was.bad_input))  # the bad name too


def test_a_push_cut_short_by_a_crash_is_cut_off_and_later_pushes_stay_whole(tmp_path: Path) -> None:
    path = tmp_path / "push.jsonl"
    path.write_bytes(b'{"step":1,"m":1.0}\n{"step":2,"m"')  # the sidecar died mid-append: never answered
    store, journal = MetricStore("tj"), PushJournal(str(path))
    assert journal.replay(jsonl_sink(store)) == 1
    journal.append([{"step": 2, "m": 2.0}])  # the trainer's resend
    assert path.read_bytes() == b'{"step":1,"m":1.0}\n{"step":2,"m":2.0}\n'
    assert store.snapshot().bad_input["malformed_json"] == 0  # type: ignore[index]


def test_a_full_journal_stops_growing_and_the_push_is_still_ingested(tmp_path: Path) -> None:
    path = tmp_path / "push.jsonl"
    store, journal = MetricStore("tj"), PushJournal(str(path), max_bytes=30)
    ingest_payload(store, b'{"step": 1, "m": 1.0}', journal.append)
    ingest_payload(store, b'{"step": 2, "m": 2.0}', journal.append)  # would pass 30 bytes
    assert journal.full and path.read_bytes() == b'{"step":1,"m":1.0}\n'
    assert store.snapshot().series["m"].reports == 2


def test_a_journal_that_cannot_be_written_is_counted_and_the_push_ingested(tmp_path: Path) -> None:
    store, journal = MetricStore("tj"), PushJournal(str(tmp_path / "missing-dir" / "push.jsonl"))
    ingest_payload(store, b'{"step": 1, "m": 1.0}', journal.append)
    snap = store.snapshot()
    assert snap.series["m"].reports == 1 and snap.bad_input["journal_error"] == 1  # type: ignore[index]


def test_a_line_longer_than_the_journal_writes_is_skipped_unread_and_the_others_taken(tmp_path: Path) -> None:
    path = tmp_path / "push.jsonl"
    path.write_bytes(b'{"step": 1, "m": 1}\n' + b'{"step": 2, "m": [' + b"1," * 3_000_000 + b'1]}\n'
                     + b'{"step": 3, "m": 3}\n' + b'{"step": 4, "m": [' + b"1," * 3_000_000)  # the last one cut
    store = MetricStore("tj")
    journal = PushJournal(str(path), max_line_bytes=1024)
    assert journal.replay(jsonl_sink(store, pushes=True)) == 3
    snap = store.snapshot()
    assert snap.series["m"].reports == 2 and snap.bad_input["malformed_json"] == 1  # type: ignore[index]
    assert path.read_bytes().endswith(b'{"step": 3, "m": 3}\n')  # the cut line is cut off the file


def test_the_longest_push_is_journaled_within_the_line_bound_and_replayed(tmp_path: Path) -> None:
    """A body of --max-push-bytes whose numbers grow most when written again (1e15), named."""
    limit = 64 * 1024
    numbers = (limit - 40) // 5
    body = ('[{"step":1,"m":[' + ",".join(["1e15"] * numbers) + ']}]').encode()
    assert len(body) <= limit
    path = tmp_path / "push.jsonl"
    store = MetricStore("tj")
    ingest_payload(store, body, PushJournal(str(path), max_line_bytes=line_bound(limit)).append, Origin("a" * 64, 10**17))
    assert store.snapshot().bad_input["journal_error"] == 0  # type: ignore[index]
    assert len(path.read_bytes()) > 3.5 * len(body)  # it did grow: 5 bytes became 19
    assert PushJournal(str(path), max_line_bytes=line_bound(limit)).replay(jsonl_sink(MetricStore("tj"), pushes=True)) == 1

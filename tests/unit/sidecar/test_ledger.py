"""The push ledger: a push resent after its answer was lost is not taken twice."""

from __future__ import annotations

from pathlib import Path

import pytest

from plateau_sidecar.journal import PushJournal
from plateau_sidecar.ledger import Origin, PushLedger
from plateau_sidecar.records import ingest_payload, jsonl_sink
from plateau_sidecar.store import MetricStore


def body(*steps: int) -> bytes:
    return ("[" + ",".join(f'{{"step": {s}, "m": {s / 10}}}' for s in steps) + "]").encode()


def kept(store: MetricStore) -> list[int]:
    return list(store.kept.reports["m"].steps)


def test_a_resend_is_skipped_up_to_what_was_taken_and_the_rest_is_taken() -> None:
    store = MetricStore("tj")
    assert ingest_payload(store, body(1, 2), origin=Origin("a", 0)) == (2, 0)
    assert ingest_payload(store, body(1, 2), origin=Origin("a", 0)) == (0, 2)  # the same push again
    assert ingest_payload(store, body(2, 3, 4), origin=Origin("a", 1)) == (2, 1)  # a resend with newer records
    assert ingest_payload(store, body(9), origin=Origin("a", 10)) == (1, 0)  # the client dropped some: a gap
    assert ingest_payload(store, body(1, 2), origin=Origin("b", 0)) == (2, 0)  # another reporter
    assert ingest_payload(store, body(1, 2)) == (2, 0)  # no origin: taken as it comes
    assert ingest_payload(store, b"[]", origin=Origin("c", 5)) == (0, 0)  # an empty push notes nothing
    assert ingest_payload(store, body(1), origin=Origin("c", 0)) == (1, 0)
    assert kept(store) == [1, 2, 3, 4, 9, 1, 2, 1, 2, 1]
    assert store.snapshot().series["m"].reports == 10


def test_the_least_recently_heard_reporter_is_forgotten_past_the_bound() -> None:
    ledger = PushLedger(max_reporters=2)
    for name in ("a", "b"):
        ledger.take(Origin(name, 0), 1)
    ledger.take(Origin("a", 1), 1)  # heard from again: "b" is now the oldest
    ledger.take(Origin("c", 0), 1)
    assert [ledger.taken_before(Origin(n, 0), 2) for n in "abc"] == [2, 0, 1]


@pytest.mark.parametrize(("reporter", "sequence", "problem"), [
    ("a", None, "Plateau-Sequence"),
    (None, "0", "Plateau-Reporter"),
    ("", "0", "Plateau-Reporter"),
    ("a" * 65, "0", "Plateau-Reporter"),
    ("a b", "0", "Plateau-Reporter"),
    ("a", "-1", "Plateau-Sequence"),
    ("a", "1_0", "Plateau-Sequence"),
    ("a", "٣", "Plateau-Sequence"),
    ("a", "1" * 19, "Plateau-Sequence"),
])
def test_headers_that_name_no_origin_are_refused(reporter: str | None, sequence: str | None, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        Origin.from_headers(reporter, sequence)


def test_no_headers_name_no_origin() -> None:
    assert Origin.from_headers(None, None) is None
    assert Origin.from_headers("Ab-_9", "007") == Origin("Ab-_9", 7)


def test_a_restarted_sidecar_skips_what_its_journal_holds(tmp_path: Path) -> None:
    path = tmp_path / "push.jsonl"
    before, journal = MetricStore("tj"), PushJournal(str(path))
    ingest_payload(before, body(1, 2), journal.append, Origin("a", 0))
    ingest_payload(before, body(2, 3), journal.append, Origin("a", 1))  # journals step 3 only
    ingest_payload(before, body(4), journal.append)
    assert path.read_text().splitlines() == ['["a",0,[{"step":1,"m":0.1},{"step":2,"m":0.2}]]',
                                             '["a",2,[{"step":3,"m":0.3}]]', '{"step":4,"m":0.4}']
    after = MetricStore("tj")
    assert PushJournal(str(path)).replay(jsonl_sink(after, pushes=True)) == 3
    assert kept(after) == [1, 2, 3, 4]
    assert ingest_payload(after, body(3, 5), origin=Origin("a", 2)) == (1, 1)  # the resend of a lost answer
    assert kept(after) == [1, 2, 3, 4, 5]


def test_a_push_cut_off_in_the_journal_is_taken_once_when_resent(tmp_path: Path) -> None:
    """The sidecar died while writing the push: it never answered, so the client resends it."""
    path = tmp_path / "push.jsonl"
    ingest_payload(MetricStore("tj"), body(1), PushJournal(str(path)).append, Origin("a", 0))
    ingest_payload(MetricStore("tj"), body(2, 3), PushJournal(str(path)).append, Origin("a", 1))
    path.write_bytes(path.read_bytes()[:-5])
    after = MetricStore("tj")
    assert PushJournal(str(path)).replay(jsonl_sink(after, pushes=True)) == 1
    assert ingest_payload(after, body(2, 3), origin=Origin("a", 1)) == (2, 0)
    assert kept(after) == [1, 2, 3]


@pytest.mark.parametrize("line", [
    b'["a", 0, []]', b'["a", -1, [{"step": 1}]]', b'["a b", 0, [{"step": 1}]]', b'[1, 0, [{"step": 1}]]',
    b'["a", 0, [{"step": 1}, {"m": 1}]]', b'["a", 0]', b'["a", 0, {"step": 1}]', b'["a", true, [{"step": 1}]]',
])
def test_a_journal_line_that_is_no_push_is_counted_whole_and_the_next_is_taken(line: bytes) -> None:
    store = MetricStore("tj")
    jsonl_sink(store, pushes=True)([line, b'{"step": 5, "m": 1}'])
    assert kept(store) == [5]
    assert store.snapshot().bad_input["malformed_json"] + store.snapshot().bad_input["bad_step"] == 1  # type: ignore[index]


def test_lines_of_the_followed_file_are_never_pushes() -> None:
    store = MetricStore("tj")
    jsonl_sink(store)([b'["a", 0, [{"step": 1, "m": 1}]]'])
    assert "m" not in store.snapshot().series


def test_a_push_that_fails_while_being_taken_is_noted_and_journaled_as_far_as_it_was_taken(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An unexpected failure at the second record (the server answers 500, the client resends):
    the journal and the ledger hold exactly what the store took, so the resend and a restart's
    replay each take the rest once."""
    path = tmp_path / "push.jsonl"
    store, journal = MetricStore("tj"), PushJournal(str(path))
    add = store.add_record

    def failing_at_the_second(step: int, record: dict[str, object]) -> None:
        if step == 2:
            raise RuntimeError("an engine bug")
        add(step, record)

    monkeypatch.setattr(store, "add_record", failing_at_the_second)
    with pytest.raises(RuntimeError):
        ingest_payload(store, body(1, 2), journal.append, Origin("a", 0))
    monkeypatch.undo()
    assert kept(store) == [1] and path.read_text() == '["a",0,[{"step":1,"m":0.1}]]\n'
    assert ingest_payload(store, body(1, 2), journal.append, Origin("a", 0)) == (1, 1)
    after = MetricStore("tj")
    PushJournal(str(path)).replay(jsonl_sink(after, pushes=True))
    assert kept(store) == kept(after) == [1, 2]

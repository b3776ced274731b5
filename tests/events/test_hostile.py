"""Hostile lines (issue 13): each becomes a reject naming the field and the reason, never an
exception, an unbounded read or a value a store cannot hold."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import tracemalloc

import msgspec
import pytest

from tenure.config import resolve
from tenure.errors import ConfigError
from tenure.events.envelope import PAYLOADS, Event
from tenure.events.parse import (
    MAX_LINE_BYTES,
    MAX_REJECT_RAW,
    CsvMapping,
    Horizon,
    LineParser,
    RawLine,
    Reject,
    read_bounded,
    read_csv,
)
from tests.fixtures.hostile import (
    CUSTOM,
    HIDDEN,
    ID_FIELDS,
    PAYLOAD_IDS,
    Endless,
    custom_line,
    deep_line,
    event,
    jline,
    nested,
    with_payload_id,
    workspace,
)

parser = LineParser([CUSTOM])
DAY = dt.timedelta(days=1)


def stream(*lines: bytes, horizon: Horizon | None = None) -> list[Event | Reject]:
    return list(parser.parse_stream(read_bounded(io.BytesIO(b"\n".join(lines) + b"\n")), horizon))


def rejected(item: Event | Reject, field: str, words: str) -> Reject:
    assert isinstance(item, Reject), item
    assert item.field == field, item
    assert words in item.reason and item.reason.startswith(field), item.reason
    return item


@pytest.mark.parametrize("depth", [65, 500, 5_000, 30_000])
def test_a_line_nested_too_deep_is_a_reject(depth: int) -> None:
    raw = deep_line(depth)
    rejected(parser.parse(RawLine(4, raw)), "x", "nested deeper than 64 levels")
    got = stream(jline(event("a")), raw, jline(event("b")))
    assert [type(g).__name__ for g in got] == ["UsageEvent", "Reject", "UsageEvent"]
    assert got[1].line_no == 2
    rejected(parser.parse(RawLine(1, nested(depth))), "line", "nested deeper")


@pytest.mark.parametrize("depth", [62, 63, 1_000, 30_000])
def test_a_registered_types_payload_is_bounded_in_depth_too(depth: int) -> None:
    # The line is one level, the payload another: 62 levels inside it make 64.
    raw = custom_line(b'{"v": ' + nested(depth) + b"}")
    for got in (parser.parse(RawLine(1, raw)), stream(raw)[0]):
        if depth <= 62:
            assert isinstance(got, Event)
        else:
            rejected(got, "payload", "nested deeper than 64 levels")


def test_depth_counts_brackets_outside_strings_only() -> None:
    text = '"[{\\' * 200
    note = parser.parse(RawLine(1, custom_line(jline({"text": text}))))
    assert isinstance(note, Event) and note.payload == {"text": text}


@pytest.mark.parametrize(
    ("obj", "field"),
    [
        (event(customer_id="c\x00"), "customer_id"),
        (
            event(
                type="support.ticket", payload={"ticket_id": "t", "sentiment": 0, "topic": "a\x00"}
            ),
            "payload.topic",
        ),
        (event(type="payment.failed", payload={"reason": "\x00"}), "payload.reason"),
        (event(type=CUSTOM, payload={"a": [{"b": "x\x00y"}]}), "payload.a.0.b"),
        (event(type=CUSTOM, payload={"k\x00": 1}), "payload"),
        (event(type="usage\x00"), "type"),
        (event(occurred_at="2026-03-01T10:00:00Z\x00"), "occurred_at"),
    ],
)
def test_a_nul_anywhere_is_a_reject_naming_the_field(obj: dict, field: str) -> None:
    raw = jline(obj)
    assert b"\\u0000" in raw
    for got in (parser.parse(RawLine(1, raw)), stream(raw)[0]):
        r = rejected(got, field, "NUL")
        assert "\x00" not in r.reason and "\x00" not in r.field


def test_an_escaped_backslash_before_u0000_is_no_nul() -> None:
    got = stream(jline(event(type="payment.failed", payload={"reason": "C:\\u0000"})))[0]
    assert isinstance(got, Event) and got.payload.reason == "C:\\u0000"


@pytest.mark.parametrize("name", sorted(HIDDEN))
@pytest.mark.parametrize("field", ID_FIELDS)
def test_ids_are_printable(field: str, name: str) -> None:
    raw = jline(event(**{field: f"x{HIDDEN[name]}y"}))
    for got in (parser.parse(RawLine(1, raw)), stream(raw)[0]):
        r = rejected(got, field, "NUL" if name == "NUL" else "ids must be printable")
        assert r.reason.isprintable()


@pytest.mark.parametrize(
    "value", ["c-Ünïcødé", "客户-42", "c 42", "c\u00a042", "c-🙂", "[bold]c[/]"]
)
def test_printable_ids_in_any_script_are_kept(value: str) -> None:
    got = stream(jline(event(customer_id=value, partner_id=value)))[0]
    assert isinstance(got, Event) and got.customer_id == value


def test_ids_are_bounded_in_length() -> None:
    rejected(stream(jline(event(customer_id="c" * 201)))[0], "customer_id", "200")


def test_the_cases_cover_every_id_of_every_typed_payload() -> None:
    ids = {
        (p, f.name) for p in PAYLOADS.values() for f in msgspec.structs.fields(p) if "_id" in f.name
    }
    assert ids == {(PAYLOADS[t], field) for t, _, field in PAYLOAD_IDS}


@pytest.mark.parametrize(("event_type", "payload", "field"), PAYLOAD_IDS)
def test_ids_in_a_payload_are_printable(event_type: str, payload: dict, field: str) -> None:
    for name, char in sorted(HIDDEN.items()):
        raw = jline(with_payload_id(event_type, payload, field, f"x{char}y"))
        for got in (parser.parse(RawLine(1, raw)), stream(raw)[0]):
            words = "NUL" if name == "NUL" else "ids must be printable"
            r = rejected(got, f"payload.{field}", words)
            assert r.reason.isprintable() and char not in r.field, name


@pytest.mark.parametrize(("event_type", "payload", "field"), PAYLOAD_IDS)
def test_ids_in_a_payload_are_bounded_and_printable_ones_kept(
    event_type: str, payload: dict, field: str
) -> None:
    long = jline(with_payload_id(event_type, payload, field, "i" * 201))
    rejected(stream(long)[0], f"payload.{field}", "200")
    for value in ("客户-42", "c 42", "[bold]o[/]", "i" * 200):
        got = stream(jline(with_payload_id(event_type, payload, field, value)))[0]
        assert isinstance(got, Event) and getattr(got.payload, field) == value


def test_csv_rows_hold_payload_ids_to_the_same_rule() -> None:
    data = (
        "event_id,type,customer_id,occurred_at,payload.amount,payload.order_id\n"
        "a,purchase,c,2026-03-01T10:00:00Z,5,o-1\n"
        "b,purchase,c,2026-03-01T10:00:00Z,5,o\u202e2\n"
        "c,purchase,c,2026-03-01T10:00:00Z,5,o\x1b[2J\n"
    ).encode()
    got = list(read_csv(read_bounded(io.BytesIO(data)), parser, CsvMapping.identity()))
    assert isinstance(got[0], Event) and got[0].payload.order_id == "o-1"
    for r in got[1:]:
        rejected(r, "payload.order_id", "ids must be printable")


def test_a_reject_keeps_a_prefix_its_length_and_digest() -> None:
    raw = jline(event(type="teleport", payload={"pad": "a" * 60_000}))
    r = parser.parse(RawLine(1, raw))
    assert isinstance(r, Reject)
    assert r.raw == raw[:MAX_REJECT_RAW] and r.size == len(raw)
    assert r.sha256 == hashlib.sha256(raw).hexdigest()
    assert str(len(raw)) in r.reason and r.sha256 in r.reason


def test_every_reject_carries_the_length_and_digest_of_its_whole_input() -> None:
    lines = [
        jline(event("ok")),
        b"not json",
        jline(event("rlo", customer_id="c\u202e")),
        jline(event("far", occurred_at="2150-01-01T00:00:00Z")),
        b"x" * (MAX_LINE_BYTES + 5),  # cut while read: only its head reaches the parser
        b"",
    ]
    got = stream(*lines, horizon=Horizon(DAY))
    assert isinstance(got[0], Event)
    for raw, r in zip(lines[1:], got[1:], strict=True):
        assert isinstance(r, Reject) and r.raw == raw[:MAX_REJECT_RAW]
        assert (r.size, r.sha256) == (len(raw), hashlib.sha256(raw).hexdigest())
    assert str(MAX_LINE_BYTES + 5) in got[4].reason and "sha256" not in got[1].reason


def test_field_and_reason_from_the_input_are_printable_and_bounded() -> None:
    key = "\x1b[31m\u202e" + "k" * 400
    r = stream(jline(event(payload={"minutes": 1.0, key: 1})))[0]
    assert isinstance(r, Reject) and "a field's name" in r.reason
    assert r.field.isprintable() and len(r.field) <= 200 and "\x1b" not in r.reason
    assert "\\x1b" in r.field and "\\u202e" in r.field


def test_an_over_long_line_is_read_in_chunks_and_the_next_lines_keep_their_numbers() -> None:
    size = 64 * 1024 * 1024
    after = b"\n" + jline(event("after")) + b"\n"
    tracemalloc.start()
    try:
        got = list(parser.parse_stream(read_bounded(io.BufferedReader(Endless(size, after)))))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * 1024 * 1024
    first, second = got
    r = rejected(first, "payload", f"line is {size} bytes")
    assert r.line_no == 1 and r.size == size and len(r.raw) == MAX_REJECT_RAW
    assert r.sha256 == hashlib.sha256(b"a" * size).hexdigest()
    assert isinstance(second, Event) and second.event_id == "after"


def test_a_line_just_under_the_reading_limit_is_parsed_whole() -> None:
    got = list(read_bounded(io.BytesIO(b"a" * MAX_LINE_BYTES + b"\r\nb")))
    assert got == [b"a" * MAX_LINE_BYTES + b"\r\n", b"b"]


def test_integers_a_store_cannot_write_are_refused_in_free_payloads() -> None:
    rejected(stream(custom_line(b'{"n": [1, 99999999999999999999]}'))[0], "payload.n.1", "64 bits")
    assert isinstance(stream(custom_line(b'{"n": -9223372036854775808}'))[0], Event)


@pytest.mark.parametrize(
    ("at", "words"),
    [
        ("1969-12-31T23:59:59Z", "outside 1970-2200"),
        ("1970-01-01T00:30:00+01:00", "before 1970"),
        ("2201-01-01T00:00:00Z", "outside 1970-2200"),
    ],
)
def test_times_before_1970_are_refused(at: str, words: str) -> None:
    rejected(stream(jline(event(occurred_at=at)))[0], "occurred_at", words)


def test_an_event_far_ahead_of_the_run_is_refused_with_its_line_number() -> None:
    lines = [jline(event(f"e{d}", occurred_at=f"2026-03-{d:02d}T10:00:00Z")) for d in (1, 2)]
    lines.insert(1, jline(event("future", customer_id="c-2", occurred_at="2150-01-01T00:00:00Z")))
    got = stream(*lines, horizon=Horizon())
    assert [type(g).__name__ for g in got] == ["UsageEvent", "Reject", "UsageEvent"]
    r = rejected(got[1], "occurred_at", "more than 1d ahead of the newest event so far")
    assert r.line_no == 2


def test_the_horizon_without_a_clock_is_the_newest_event_plus_the_skew() -> None:
    horizon = Horizon(dt.timedelta(hours=12))
    at = [
        "2026-03-01T00:00:00Z",
        "2026-03-01T12:00:00Z",
        "2026-03-02T00:00:01Z",
        "2026-02-01T00:00:00Z",
    ]
    got = stream(*(jline(event(f"e{i}", occurred_at=t)) for i, t in enumerate(at)), horizon=horizon)
    assert [type(g).__name__ for g in got] == ["UsageEvent", "UsageEvent", "Reject", "UsageEvent"]
    assert "12h" in got[2].reason


def test_a_replay_keeps_a_past_historys_gaps_and_is_bounded_past_the_clock() -> None:
    now = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
    horizon = Horizon(DAY, lambda: now)
    at = [
        "2026-03-01T00:00:00Z",  # a history in the past...
        "2026-03-20T00:00:00Z",  # ...with a gap of weeks
        "2026-06-01T23:00:00Z",
        "2026-06-02T22:00:00Z",  # a day past the newest, a little more past the clock
        "2026-06-04T00:00:00Z",  # over a day past both
        "2150-01-01T00:00:00Z",
    ]
    got = stream(*(jline(event(f"e{i}", occurred_at=t)) for i, t in enumerate(at)), horizon=horizon)
    kinds = [type(g).__name__ for g in got]
    assert kinds == ["UsageEvent"] * 4 + ["Reject"] * 2
    assert "the newest event so far (2026-06-02T22:00:00+00:00)" in got[4].reason
    assert "the clock (2026-06-01T00:00:00+00:00)" in got[4].reason


def test_live_the_wall_clock_bounds_every_event() -> None:
    now = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
    horizon = Horizon(DAY, lambda: now, live=True)
    at = [
        "2026-05-01T00:00:00Z",
        "2026-06-01T23:00:00Z",
        "2026-06-02T00:00:01Z",
        "2026-06-01T12:00:00Z",
    ]
    got = stream(*(jline(event(f"e{i}", occurred_at=t)) for i, t in enumerate(at)), horizon=horizon)
    assert [type(g).__name__ for g in got] == ["UsageEvent", "UsageEvent", "Reject", "UsageEvent"]


def test_csv_rows_get_the_same_checks() -> None:
    data = (
        b"event_id,type,customer_id,occurred_at,payload\n"
        b"e,usage,c,2026-03-01T11:00:00Z,\n"
        b"a,usage,c\x00,2026-03-01T10:00:00Z,\n"
        b"b,crm.note,c,2026-03-01T10:00:00Z," + b"[" * 100 + b"]" * 100 + b"\n"
        b"c,usage,c,2150-01-01T10:00:00Z,\n"
        b"d,usage,c," + b"x" * (MAX_LINE_BYTES + 10) + b"\n"
        b"f,usage,c,2026-03-01T12:00:00Z,\n"
    )
    lines = read_bounded(io.BytesIO(data))
    got = list(read_csv(lines, parser, CsvMapping.identity(), Horizon()))
    assert [type(g).__name__ for g in got] == ["UsageEvent", *["Reject"] * 4, "UsageEvent"]
    rejected(got[1], "customer_id", "NUL")
    rejected(got[2], "payload", "nested deeper")
    rejected(got[3], "occurred_at", "ahead")
    r = rejected(got[4], "payload", "line is")
    assert r.line_no == 6 and r.size and len(r.raw) <= MAX_REJECT_RAW


def test_the_skew_is_set_in_tenure_yaml(tmp_path) -> None:
    assert workspace(tmp_path / "a").max_future_skew == DAY
    assert workspace(tmp_path / "b", max_future_skew="12h").max_future_skew == DAY / 2
    for bad in ("0s", "2", "1y", "-1d", "[1]"):
        with pytest.raises(ConfigError, match="max_future_skew"):
            workspace(tmp_path / "c", max_future_skew=bad)


def test_registered_type_names_are_printable(tmp_path) -> None:
    (tmp_path / "tenure.yaml").write_text('event_types: ["crm.\\u202enote"]\n')
    with pytest.raises(ConfigError, match="event_types"):
        resolve(tmp_path)


def test_a_replays_first_event_is_bounded_by_the_clock_and_the_stored_newest() -> None:
    now = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
    far = jline(event("far", occurred_at="2150-01-01T00:00:00Z"))
    assert isinstance(stream(far, horizon=Horizon(DAY, lambda: now))[0], Reject)
    stored = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
    later = jline(event("later", occurred_at="2026-03-03T00:00:00Z"))
    r = rejected(stream(later, horizon=Horizon(DAY, newest=stored))[0], "occurred_at", "ahead")
    assert "2026-03-01" in r.reason
    assert isinstance(stream(far)[0], Event)  # nothing to be ahead of: no clock, nothing stored

"""Parsing: every valid line becomes an event, every bad line a reject naming the field."""

from __future__ import annotations

import io

import orjson
import pytest

from tenure.errors import InputError
from tenure.events.envelope import EVENT_TYPES, Event, json_schema
from tenure.events.parse import CsvMapping, LineParser, RawLine, Reject, read_csv, read_lines
from tests.helpers import line

parser = LineParser()


def parse(raw: bytes) -> Event | Reject:
    return parser.parse(RawLine(7, raw))


def test_valid_line_becomes_typed_event() -> None:
    e = parse(line("purchase", amount=59.9, currency="EUR"))
    assert isinstance(e, Event)
    assert e.type == "purchase"
    assert e.payload.amount == 59.9
    assert e.occurred_at.utcoffset().total_seconds() == 0


def test_offsets_are_kept_aware() -> None:
    e = parse(line("usage", at="2026-03-01T10:00:00+02:00", minutes=3.0))
    assert isinstance(e, Event)
    assert e.occurred_at.utcoffset().total_seconds() == 7200


@pytest.mark.parametrize(
    ("raw", "field", "words"),
    [
        (b"{not json", "line", "invalid JSON"),
        (b"", "line", "blank"),
        (b"   ", "line", "blank"),
        (b"[1, 2]", "line", "JSON object"),
        (b"\xff\xfe{}", "line", "UTF-8"),
        (line("usage", at="2026-03-01T10:00:00"), "occurred_at", "time zone"),
        (line("teleport"), "type", "unknown event type 'teleport'"),
        (line("purchase", amount="twelve"), "payload.amount", "float"),
        (line("purchase", amount=-1.0), "payload.amount", ">= 0"),
        (line("purchase", amount=1e308), "payload.amount", "<="),
        (line("purchase", amount=1e20), "payload.amount", "<="),
        (line("usage", at="0001-01-01T00:00:00+01:00"), "occurred_at", "outside"),
        (line("usage", at="9999-12-31T23:59:59-01:00"), "occurred_at", "outside"),
        (line("usage", customer="c-XX").replace(b"XX", b"\xff"), "line", "UTF-8"),
        (line("purchase"), "payload.amount", "required"),
        (line("support.ticket", ticket_id="t", sentiment=1.5), "payload.sentiment", "<= 1.0"),
        (line("profile.updated", timezone="Mars/Olympus"), "payload.timezone", "IANA"),
        (line("usage", minutes=1.0, **{"col\u202eour": "red"}), "payload.col\\u202eour", "name"),
        (
            orjson.dumps({"event_id": "e", "type": "usage", "occurred_at": "2026-03-01T10:00:00Z"}),
            "customer_id",
            "required",
        ),
        (
            orjson.dumps(
                {
                    "event_id": 5,
                    "type": "usage",
                    "customer_id": "c",
                    "occurred_at": "2026-03-01T10:00:00Z",
                }
            ),
            "event_id",
            "str",
        ),
        (
            orjson.dumps(
                {
                    "type": "usage",
                    "customer_id": "c",
                    "event_id": "e",
                    "occurred_at": "2026-03-01T10:00:00Z",
                    "schema_version": 2,
                }
            ),
            "schema_version",
            "1",
        ),
    ],
)
def test_bad_line_is_rejected_with_field_and_reason(raw: bytes, field: str, words: str) -> None:
    r = parse(raw)
    assert isinstance(r, Reject), r
    assert r.field == field
    assert words in r.reason
    assert r.reason.startswith(field)
    assert r.raw == raw and r.line_no == 7


@pytest.mark.parametrize("size", [70_000, 200_000])
def test_payload_over_64_kib_is_rejected(size: int) -> None:
    custom = LineParser(["crm.note"])
    r = custom.parse(RawLine(3, line("crm.note", text="a" * size)))
    assert isinstance(r, Reject)
    assert r.field == "payload"
    assert "65536" in r.reason


def test_payload_just_under_64_kib_is_kept() -> None:
    custom = LineParser(["crm.note"])
    assert isinstance(custom.parse(RawLine(3, line("crm.note", text="a" * 65_000))), Event)


def test_read_lines_numbers_from_one_and_strips_terminators() -> None:
    got = list(read_lines(io.BytesIO(b"a\r\nb\n\nc")))
    assert [(r.line_no, r.raw) for r in got] == [(1, b"a"), (2, b"b"), (3, b""), (4, b"c")]


def test_csv_with_mapping_and_constants() -> None:
    data = (
        b"id,member,ts,total,shop\n"
        b"o-1,c-9,2026-03-01T10:00:00Z,12.50,dealer-1\n"
        b"o-2,c-9,2026-03-02T10:00:00,7,dealer-1\n"
    )
    mapping = CsvMapping(
        columns={
            "event_id": "id",
            "customer_id": "member",
            "occurred_at": "ts",
            "partner_id": "shop",
        },
        payload={"amount": "total"},
        constants={"type": "purchase", "source": "pos"},
    )
    got = list(read_csv(io.BytesIO(data), parser, mapping))
    assert len(got) == 2
    assert isinstance(got[0], Event)
    assert got[0].payload.amount == 12.5 and got[0].partner_id == "dealer-1"
    assert isinstance(got[1], Reject) and got[1].line_no == 3 and got[1].field == "occurred_at"


def test_registered_types_are_accepted_only_when_registered() -> None:
    raw = line("loyalty.points_earned", points=10)
    assert isinstance(parse(raw), Reject)
    custom = LineParser(["loyalty.points_earned"]).parse(RawLine(1, raw))
    assert isinstance(custom, Event) and custom.payload == {"points": 10}


def test_json_schema_names_every_type() -> None:
    schema = json_schema()
    text = orjson.dumps(schema).decode()
    for event_type in EVENT_TYPES:
        assert f'"{event_type}"' in text
    assert schema["discriminator"]["propertyName"] == "type"


def test_byte_order_mark_on_the_first_line_is_ignored() -> None:
    got = list(read_lines(io.BytesIO(b"\xef\xbb\xbf" + line("usage") + b"\n")))
    assert isinstance(parser.parse(got[0]), Event)


def test_csv_accounts_for_every_line() -> None:
    data = (
        b"\xef\xbb\xbfid,member,ts,total,payload\n"
        b"o-1,c-9,2026-03-01T10:00:00Z,12.50,\n"
        b"\n"
        b"o-2,c-9,2026-03-01T10:00:00Z,1,[1]\n"
        b"o-3,c-9,2026-03-01T10:00:00Z,1,,extra\n"
        b'o-4,c-9,2026-03-01T10:00:00Z,inf,"{""items"": 2}"\n'
        b'o-5,c-9,2026-03-01T10:00:00Z,3,"{""items"": 2}"\n'
    )
    mapping = CsvMapping(
        columns={"event_id": "id", "customer_id": "member", "occurred_at": "ts"},
        payload={"amount": "total"},
        constants={"type": "purchase", "payload.currency": "EUR"},
    )
    got = list(read_csv(io.BytesIO(data), parser, mapping))
    assert [type(g).__name__ for g in got] == [
        "PurchaseEvent",
        "Reject",
        "Reject",
        "Reject",
        "Reject",
        "PurchaseEvent",
    ]
    assert got[0].payload.currency == "EUR" and got[5].payload.items == 2
    blank, not_object, extra, infinite = got[1:5]
    assert (blank.line_no, blank.reason) == (3, "line: blank")
    assert not_object.field == "payload" and "JSON object" in not_object.reason
    assert extra.raw == b"o-3,c-9,2026-03-01T10:00:00Z,1,,extra" and "cells" in extra.reason
    assert infinite.field == "payload.amount"


def test_csv_mapping_to_a_missing_column_fails_up_front() -> None:
    mapping = CsvMapping(columns={"event_id": "order_no"}, payload={}, constants={})
    with pytest.raises(InputError, match="no column 'order_no'"):
        list(read_csv(io.BytesIO(b"id,member\n1,2\n"), parser, mapping))


def test_the_stream_fast_path_agrees_with_line_by_line_parsing() -> None:
    lines = [
        b"\xef\xbb\xbf" + line("usage", event_id="a"),
        b"",
        b"{bad",
        line("teleport"),
        line("purchase", event_id="b", amount=2.5),
        line("usage", event_id="x" * 300),
    ]
    data = b"\r\n".join(lines) + b"\n"
    slow = [parser.parse(r) for r in read_lines(io.BytesIO(data))]
    fast = list(parser.parse_stream(io.BytesIO(data)))
    assert fast == slow
    assert [type(x).__name__ for x in fast] == [
        "UsageEvent",
        "Reject",
        "Reject",
        "Reject",
        "PurchaseEvent",
        "Reject",
    ]

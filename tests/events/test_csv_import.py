"""CSV exports go in as they are: time zones, date and number formats, value maps, a row filter
and line items grouped into one event; every row not skipped is an event or a reject naming the
field. The shipped examples and the README's example import in one run each."""

from __future__ import annotations

import datetime as dt
import io
import json
import re
import shlex
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from tenure.cli import app
from tenure.errors import ConfigError
from tenure.events import csv_import
from tenure.events.csv_import import CsvMapping, mapping_of, read_csv
from tenure.events.envelope import Event
from tenure.events.parse import LineParser, Reject
from tenure.runtime.ingest import load_mapping

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
parser = LineParser()
runner = CliRunner()


def read(text: str, **spec: Any) -> list[Event | Reject]:
    """The events and rejects of a CSV text under a mapping (mapping-file keys)."""
    return list(read_csv(io.BytesIO(text.encode()), parser, mapping_of(spec)))


def utc(item: Event | Reject) -> str:
    assert isinstance(item, Event), item
    return item.occurred_at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M")


def stored(ws: Path) -> dict[str, dict[str, Any]]:
    """The workspace's event log by event id."""
    db = sqlite3.connect(ws / "tenure.db")
    try:
        rows = db.execute(
            "SELECT event_id, type, customer_id, occurred_at, payload FROM events"
        ).fetchall()
    finally:
        db.close()
    return {
        r[0]: {"type": r[1], "customer_id": r[2], "at": r[3][:16], "payload": json.loads(r[4])}
        for r in rows
    }


def tenure_run(*args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    result = runner.invoke(app, ["run", *args, "--json"], env=env)
    assert result.exit_code == 0, result.stdout + result.stderr
    summary: dict[str, Any] = json.loads(result.stdout)
    return summary


# -- the shipped exports, one run each ---------------------------------------------------------


def test_the_orders_export_imports_one_purchase_per_order(tmp_path: Path) -> None:
    csv, mapping = EXAMPLES / "orders.csv", EXAMPLES / "orders.map.yaml"
    summary = tenure_run("--events", str(csv), "--csv-map", str(mapping), "-w", str(tmp_path))
    assert (summary["read"], summary["accepted"], summary["rejected"]) == (3, 3, 0)
    events = stored(tmp_path)
    assert set(events) == {"order-1001", "order-1002", "order-1004"}  # 1003 was refunded
    first = events["order-1001"]
    assert first["type"] == "purchase" and first["customer_id"] == "c-1"
    assert first["at"] == "2026-03-01 09:00"  # 10:00 in Berlin, winter time
    assert first["payload"]["amount"] == pytest.approx(1268.90)  # "1,249.00" + 19.90
    assert first["payload"]["items"] == 3 and first["payload"]["currency"] == "EUR"
    assert events["order-1002"]["payload"]["currency"] == "EUR"  # already upper case
    assert events["order-1004"]["at"] == "2026-03-29 10:00"  # summer time from that morning
    assert events["order-1004"]["payload"]["amount"] == pytest.approx(1059.95)


def test_the_billing_export_imports_its_events_by_type(tmp_path: Path) -> None:
    csv, mapping = EXAMPLES / "billing.csv", EXAMPLES / "billing.map.yaml"
    summary = tenure_run("--events", str(csv), "--csv-map", str(mapping), "-w", str(tmp_path))
    assert (summary["read"], summary["accepted"], summary["rejected"]) == (5, 5, 0)
    events = stored(tmp_path)
    assert {k: v["type"] for k, v in events.items()} == {
        "evt-001": "subscription.started",
        "evt-002": "subscription.started",
        "evt-004": "subscription.renewed",
        "evt-005": "payment.failed",
        "evt-006": "subscription.cancelled",
    }  # evt-003, a trial extension, maps to null: skipped
    assert events["evt-002"]["payload"]["mrr"] == 1249.0  # "1.249,00"
    assert events["evt-001"]["at"] == "2026-03-01 08:00"
    assert events["evt-004"]["at"] == "2026-04-01 07:00"  # Paris in summer time
    assert events["evt-005"]["at"] == "2026-04-01 09:30"  # its own +0200
    failed = events["evt-005"]["payload"]
    assert failed == {
        "amount": 1249.0,
        "reason": "card declined",
        "attempt": 1,
        "currency": "EUR",  # none in the export: the workspace's reporting currency, said so
        "__rate__": None,
    }


def test_the_helpdesk_export_imports_its_tickets(tmp_path: Path) -> None:
    csv, mapping = EXAMPLES / "helpdesk.csv", EXAMPLES / "helpdesk.map.yaml"
    summary = tenure_run("--events", str(csv), "--csv-map", str(mapping), "-w", str(tmp_path))
    assert (summary["read"], summary["accepted"], summary["rejected"]) == (4, 4, 0)
    events = stored(tmp_path)
    assert set(events) == {"ticket-4711", "ticket-4712", "ticket-4713", "ticket-4715"}
    assert all(e["type"] == "support.ticket" for e in events.values())
    solved = events["ticket-4711"]
    assert solved["payload"] == {
        "ticket_id": "4711",
        "sentiment": 1.0,
        "status": "closed",
        "topic": "Tent pole broke",
    }
    assert solved["at"] == "2026-03-02 14:05"  # 9:05 AM in New York, standard time
    assert events["ticket-4712"]["payload"]["sentiment"] == 0.0  # an empty rating
    assert events["ticket-4715"]["at"] == "2026-03-10 14:15"  # daylight saving time since the 8th


def _readme_csv_passage() -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index("### CSV input")
    return text[start : text.index("\n### ", start + 1)]


def test_the_readme_example_runs_as_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    passage = _readme_csv_passage()
    [command] = re.findall(r"```sh\n(.*?)\n```", passage, re.S)
    args = shlex.split(command)
    assert args[0] == "tenure" and args[1] == "run"
    monkeypatch.chdir(ROOT)
    summary = tenure_run(*args[2:], env={"TENURE_WORKSPACE": str(tmp_path / "ws")})
    assert (summary["accepted"], summary["rejected"]) == (3, 0)
    assert set(stored(tmp_path / "ws")) == {"order-1001", "order-1002", "order-1004"}
    # The mapping the README shows is the one that ships.
    [shown] = re.findall(r"```yaml\n(.*?)\n```", passage, re.S)
    shipped = yaml.safe_load((EXAMPLES / "orders.map.yaml").read_text())
    assert mapping_of(yaml.safe_load(shown)) == mapping_of(shipped)


# -- time zone and date format -----------------------------------------------------------------

HEAD = "id,member,at,total\n"
PURCHASE = {
    "columns": {"event_id": "id", "customer_id": "member", "occurred_at": "at"},
    "payload": {"amount": "total"},
    "constants": {"type": "purchase"},
}


def test_naive_times_take_the_zone_through_daylight_saving() -> None:
    got = read(
        HEAD + "a,c,2026-03-28 10:00:00,1\n"  # Berlin, winter: +01:00
        "b,c,2026-03-29 10:00:00,1\n"  # summer time began at 02:00 that night: +02:00
        "c,c,2026-10-25 02:30:00,1\n"  # the hour the clocks go back: the first one is taken
        "d,c,2026-10-25 03:30:00,1\n",
        **PURCHASE,
        timezone="Europe/Berlin",
    )
    assert [utc(g) for g in got] == [
        "2026-03-28T09:00",
        "2026-03-29T08:00",
        "2026-10-25T00:30",
        "2026-10-25T02:30",
    ]


def test_a_time_the_clocks_skip_is_a_reject() -> None:
    [got] = read(HEAD + "a,c,2026-03-29 02:30:00,1\n", **PURCHASE, timezone="Europe/Berlin")
    assert isinstance(got, Reject) and got.field == "occurred_at"
    assert "does not exist in Europe/Berlin" in got.reason


def test_explicit_offsets_are_kept() -> None:
    got = read(
        HEAD + "a,c,2026-03-01 10:00:00 +0100,1\n"
        "b,c,2026-07-01T10:00:00Z,1\n"
        "c,c,2026-07-01 10:00:00-0500,1\n",
        **PURCHASE,
        timezone="Europe/Berlin",
        date_format="%Y-%m-%d %H:%M:%S",
    )
    assert [utc(g) for g in got] == ["2026-03-01T09:00", "2026-07-01T10:00", "2026-07-01T15:00"]
    [own] = read(
        HEAD + "a,c,01.03.2026 10:00 +0100,1\n", **PURCHASE, date_format="%d.%m.%Y %H:%M %z"
    )
    assert utc(own) == "2026-03-01T09:00"


def test_naive_times_without_a_zone_are_still_refused() -> None:
    [got] = read(HEAD + "a,c,01.03.2026 10:00,1\n", **PURCHASE, date_format="%d.%m.%Y %H:%M")
    assert isinstance(got, Reject) and got.field == "occurred_at"
    assert "no time zone" in got.reason


def test_the_date_format_reads_the_export_and_iso_still_passes() -> None:
    got = read(
        HEAD + "a,c,01.03.2026 10:00,1\nb,c,2026-03-02T10:00:00,1\nc,c,2026/03/03 10:00,1\n",
        **PURCHASE,
        timezone="UTC",
        date_format="%d.%m.%Y %H:%M",
    )
    assert [utc(g) for g in got[:2]] == ["2026-03-01T10:00", "2026-03-02T10:00"]
    assert isinstance(got[2], Reject) and got[2].field == "occurred_at"
    assert "'%d.%m.%Y %H:%M'" in got[2].reason


# -- numbers -----------------------------------------------------------------------------------


def test_decimal_and_thousands_separators() -> None:
    got = read(
        HEAD.replace("total", "total,order") + 'a,c,2026-03-01T10:00:00Z,"1.249,50",1.234\n'
        "b,c,2026-03-01T10:00:00Z,7,x\n"
        'c,c,2026-03-01T10:00:00Z,"1,249.50",x\n',
        **PURCHASE | {"payload": {"amount": "total", "order_id": "order"}},
        decimal=",",
        thousands=".",
    )
    first, second, third = got
    assert isinstance(first, Event) and first.payload.amount == 1249.5
    assert first.payload.order_id == "1.234"  # not a number field: left as it is
    assert isinstance(second, Event) and second.payload.amount == 7
    assert isinstance(third, Reject) and third.field == "payload.amount"
    assert "written like 1.234,5" in third.reason


# -- value maps and the row filter -------------------------------------------------------------


def test_value_maps_fix_codes_and_pick_types_and_null_skips_the_row() -> None:
    got = read(
        "id,member,at,status,total,cur\n"
        "a,c,2026-03-01T10:00:00Z,paid,5,eur\n"
        "b,c,2026-03-01T10:00:00Z,refunded,5,eur\n"
        "c,c,2026-03-01T10:00:00Z,paid,5,EUR\n"
        "d,c,2026-03-01T10:00:00Z,lost,5,eur\n"
        "e,c,2026-03-01T10:00:00Z,,5,eur\n",
        columns={"event_id": "id", "customer_id": "member", "occurred_at": "at", "type": "status"},
        payload={"amount": "total", "currency": "cur"},
        values={
            "type": {"paid": "purchase", "refunded": None, "": "service"},
            "payload.currency": {"eur": "EUR"},
        },
    )
    assert [g.event_id if isinstance(g, Event) else g.field for g in got] == ["a", "c", "type", "e"]
    assert got[0].payload.currency == got[1].payload.currency == "EUR"
    assert "unknown event type" in got[2].reason
    assert got[3].type == "service"


def test_where_skips_rows_and_a_row_it_cannot_judge_is_a_reject() -> None:
    got = read(
        "id,member,at,total,Order Status\n"
        "a,c,2026-03-01T10:00:00Z,5,paid\n"
        "b,c,2026-03-01T10:00:00Z,0,paid\n"
        "c,c,2026-03-01T10:00:00Z,5,refunded\n"
        "d,c,2026-03-01T10:00:00Z,n/a,paid\n",
        **PURCHASE,
        where='number(total) > 0 and row["Order Status"] != "refunded"',
    )
    assert isinstance(got[0], Event) and got[0].event_id == "a"
    [bad] = got[1:]
    assert isinstance(bad, Reject) and bad.line_no == 5 and bad.field == "where"
    assert "Invalid number" in bad.reason


# -- grouping line items -----------------------------------------------------------------------

LINES = "order,member,at,sku,qty,total\n"
ORDERS = {
    "columns": {"event_id": "order-{order}", "customer_id": "member", "occurred_at": "at"},
    "payload": {"order_id": "order", "amount": "total", "items": "qty"},
    "constants": {"type": "purchase"},
    "group_by": "order",
    "sum": ["payload.amount", "payload.items"],
}


def test_line_items_group_into_one_purchase() -> None:
    got = read(
        LINES + "1,c,2026-03-01T10:00:00Z,A,1,0.10\n"
        "1,c,2026-03-01T10:00:00Z,B,2,0.20\n"
        "2,d,2026-03-02T10:00:00Z,A,1,5\n",
        **ORDERS,
    )
    assert [g.event_id for g in got] == ["order-1", "order-2"]
    first = got[0]
    assert isinstance(first, Event) and first.payload.amount == 0.3  # added up exactly
    assert first.payload.items == 3 and first.payload.order_id == "1"


def test_a_group_is_one_event_or_one_reject_never_part_of_an_order() -> None:
    got = read(
        LINES + "1,c,2026-03-01T10:00:00Z,A,1,5\n"
        "1,c,2026-03-01T10:00:00Z,B,1,abc\n"  # a bad line: the whole order is refused
        "2,c,2026-03-01T10:00:00Z,A,1,5\n"
        "2,d,2026-03-01T10:00:00Z,B,1,5\n"  # another customer in the same order
        "3,c,2026-03-01T10:00:00Z,A,1,5\n"
        "1,c,2026-03-01T10:00:00Z,C,1,5\n"  # order 1 again, after order 3
        ",c,2026-03-01T10:00:00Z,C,1,5\n",  # no order at all
        **ORDERS,
    )
    # A row in no group is refused at once; the groups as they close.
    assert [g.line_no if isinstance(g, Reject) else g.event_id for g in got] == [
        2,
        4,
        "order-3",
        8,
        7,
    ]
    bad_line, differ, _, no_key, again = got
    assert isinstance(bad_line, Reject) and bad_line.field == "payload.amount"
    assert bad_line.raw.count(b"\n") == 1 and "line 3; no row of order '1'" in bad_line.reason
    assert isinstance(differ, Reject) and differ.field == "customer_id"
    assert "'c' on line 4, 'd' on line 5" in differ.reason
    assert isinstance(again, Reject) and again.field == "group_by"
    assert "order '1' was read before, from line 2" in again.reason
    assert isinstance(no_key, Reject) and no_key.field == "group_by"


def test_skipped_rows_leave_their_group_whole() -> None:
    got = read(
        LINES.replace("total", "total,state") + "1,c,2026-03-01T10:00:00Z,A,1,5,ok\n"
        "1,c,2026-03-01T10:00:00Z,B,1,7,void\n"
        "1,c,2026-03-01T10:00:00Z,C,1,2,ok\n",
        **ORDERS,
        where='state == "ok"',
    )
    [order] = got
    assert isinstance(order, Event) and (order.payload.amount, order.payload.items) == (7, 2)


def test_an_id_from_each_line_cannot_name_the_group() -> None:
    per_line = {**ORDERS["columns"], "event_id": "line"}
    got = read(
        "line,order,member,at,sku,qty,total\n"
        "l-1,1,c,2026-03-01T10:00:00Z,A,1,5\n"
        "l-2,1,c,2026-03-01T10:00:00Z,B,1,5\n",
        **{**ORDERS, "columns": per_line},
    )
    [bad] = got
    assert isinstance(bad, Reject) and bad.field == "event_id" and "order-{order_id}" in bad.reason


def test_a_template_over_an_empty_cell_is_a_reject_naming_the_field() -> None:
    [got] = read(LINES + ",c,2026-03-01T10:00:00Z,A,1,5\n", **{**ORDERS, "group_by": [], "sum": []})
    assert isinstance(got, Reject) and got.field == "event_id" and "'order' is empty" in got.reason


def test_constants_count_lines_and_keep_their_own_number_format() -> None:
    got = read(
        'order,member,at,total\n1,c,2026-03-01T10:00:00Z,"1,5"\n1,c,2026-03-01T10:00:00Z,"2,5"\n',
        **{
            **ORDERS,
            "payload": {"amount": "total"},
            "constants": {"type": "purchase", "payload.items": "1", "payload.currency": "EUR"},
        },
        decimal=",",
    )
    [order] = got
    assert isinstance(order, Event) and (order.payload.amount, order.payload.items) == (4.0, 2)


def test_a_group_too_large_is_one_reject(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(csv_import, "MAX_GROUP_BYTES", 100)
    rows = "".join(f"1,c,2026-03-01T10:00:00Z,S{i},1,5\n" for i in range(10))
    got = read(LINES + rows + "2,c,2026-03-01T10:00:00Z,A,1,5\n", **ORDERS)
    assert isinstance(got[0], Reject) and got[0].field == "group_by"
    assert "at most 100" in got[0].reason and len(got[0].raw) < 200
    assert isinstance(got[1], Event) and got[1].event_id == "order-2"


# -- the mapping file --------------------------------------------------------------------------


def test_delimiter_and_every_line_accounted_for() -> None:
    got = read(
        "id;member;at;total\na;c;2026-03-01T10:00:00Z;1,5\n\nb;c;2026-03-01T10:00:00Z\n",
        **PURCHASE,
        delimiter=";",
        decimal=",",
    )
    assert isinstance(got[0], Event) and got[0].payload.amount == 1.5
    assert [(g.line_no, g.field) for g in got[1:]] == [(3, "line"), (4, "line")]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"timezone": "Europe/Berln"}, "timezone: unknown IANA time zone"),
        ({"date_format": "YYYY-MM-DD"}, "no % directive"),
        ({"decimal": ";"}, "decimal"),
        ({"decimal": ",", "thousands": ","}, "thousands"),
        ({"where": "status ==="}, "where: the expression does not parse"),
        ({"sum": ["payload.amount"]}, "give group_by too"),
        ({"values": {"kind": {"a": "b"}}}, "values: 'kind' is not a field"),
        ({"values": {"type": {True: "purchase"}}}, "quote the key"),
        ({"timezon": "UTC"}, "timezon: Extra inputs are not permitted"),
    ],
)
def test_a_bad_mapping_fails_up_front_naming_the_key(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        mapping_of(spec)


def test_run_options_go_over_the_mapping_file(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text("columns: {event_id: id}\ntimezone: Europe/Berlin\ndecimal: ','\n")
    mapping = load_mapping(
        path, ["payload.amount=total"], ["type=purchase"], {"timezone": "UTC", "decimal": None}
    )
    assert mapping == CsvMapping(
        {"event_id": "id"}, {"amount": "total"}, {"type": "purchase"}, timezone="UTC", decimal=","
    )
    path.write_text("timezone: Mars/Olympus\n")
    with pytest.raises(ConfigError, match=r"m\.yaml: timezone: unknown IANA time zone"):
        load_mapping(path, [], [])

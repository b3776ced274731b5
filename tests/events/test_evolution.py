"""Additive schema evolution (issue 15): what a producer sends beyond the schema is kept, numbers
in strings and epoch times are coerced where unambiguous, a naive time takes its source's zone;
a workspace may keep a type strict. Kept values reach the customer view and policy conditions."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from tenure.cli import app
from tenure.events.envelope import Event, payload_record
from tenure.events.parse import LineParser, RawLine, Reject
from tenure.events.personal import is_digest
from tenure.policy.model import default_policy, parse_policy
from tenure.runtime.pipeline import Pipeline
from tenure.store import queries, repo
from tenure.store.db import Store
from tests.fixtures.hostile import workspace
from tests.helpers import closed

runner = CliRunner()
EPOCH = 1_772_359_200  # 2026-03-01T10:00:00Z


def purchase(event_id: str = "p-1", customer: str = "c-1", **fields: object) -> bytes:
    """A purchase as a real producer sends it: extra fields, a context, a string amount and an
    epoch time."""
    body = {
        "event_id": event_id,
        "type": "purchase",
        "customer_id": customer,
        "occurred_at": EPOCH,
        "payload": {"amount": "19.90", "currency": "EUR", "coupon": "SPRING", "channel": "app"},
        "context": {
            "library": {"name": "analytics-python"},
            "ip": "203.0.113.7",
            "traits": {"name": "Ada Lovelace", "plan": "pro"},
        },
        **fields,
    }
    return json.dumps(body).encode()  # (orjson refuses the integers past 64 bits tried below)


def parsed(raw: bytes, parser: LineParser | None = None) -> Event | Reject:
    return (parser or LineParser()).parse(RawLine(1, raw))


def test_extra_fields_a_context_a_string_amount_and_an_epoch_time_are_accepted() -> None:
    e = parsed(purchase())
    assert isinstance(e, Event), e
    assert e.payload.amount == 19.9
    assert e.occurred_at == dt.datetime.fromtimestamp(EPOCH, dt.UTC)
    assert e.extra == {"coupon": "SPRING", "channel": "app"}
    assert e.context is not None and e.context["ip"] == "203.0.113.7"
    assert payload_record(e)["coupon"] == "SPRING" and payload_record(e)["amount"] == 19.9
    # Milliseconds since the epoch are unambiguous too (in seconds they would be past 5000).
    ms = parsed(purchase(occurred_at=EPOCH * 1000))
    assert isinstance(ms, Event) and ms.occurred_at == e.occurred_at


def test_the_usual_line_pays_nothing_and_a_context_alone_is_kept_on_it() -> None:
    raw = orjson.dumps(
        {
            "event_id": "u-1",
            "type": "usage",
            "customer_id": "c-1",
            "occurred_at": "2026-03-01T10:00:00Z",
            "payload": {"minutes": 3.0},
            "context": {"app": {"version": "4.2"}},
        }
    )
    [e] = list(LineParser().parse_stream([raw]))
    assert isinstance(e, Event) and e.context == {"app": {"version": "4.2"}} and e.extra is None


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"payload": {"amount": "a lot"}}, "payload.amount"),
        ({"payload": {"amount": "1,249.00"}}, "payload.amount"),  # a CSV option, not a guess
        ({"occurred_at": "2026-03-01T10:00:00"}, "occurred_at"),  # no zone, none declared
        ({"occurred_at": True}, "occurred_at"),
        ({"customer_id": 42}, "customer_id"),
        ({"source": {"name": "pos"}}, "source"),  # not a name to look a zone up by
        ({"context": {"n": 2**70}}, "context.n"),
        ({"payload": {"amount": 5, "deep": [[[[1]]]] * 2, "n": 2**70}}, "payload.n"),
    ],
)
def test_what_cannot_be_read_unambiguously_is_still_a_reject(change: dict, field: str) -> None:
    r = parsed(purchase(**change), LineParser(zones={"pos": "Europe/Berlin"}))
    assert isinstance(r, Reject), r
    assert r.field == field, r.reason


def test_a_naive_time_takes_its_sources_declared_zone() -> None:
    parser = LineParser(zones={"shop": "Europe/Berlin"})
    summer = parsed(purchase(occurred_at="2026-07-01T10:00:00", source="shop"), parser)
    winter = parsed(purchase(occurred_at="2026-01-15T10:00:00", source="shop"), parser)
    assert isinstance(summer, Event) and isinstance(winter, Event)
    assert summer.occurred_at.astimezone(dt.UTC).hour == 8  # CEST
    assert winter.occurred_at.astimezone(dt.UTC).hour == 9  # CET
    other = parsed(purchase(occurred_at="2026-07-01T10:00:00", source="pos"), parser)
    assert isinstance(other, Reject) and other.field == "occurred_at"


def test_a_strict_type_refuses_extra_fields_and_coercion() -> None:
    parser = LineParser(strict=["purchase"])
    r = parsed(purchase(), parser)
    assert isinstance(r, Reject)
    usage = orjson.dumps(
        {
            "event_id": "u-1",
            "type": "usage",
            "customer_id": "c-1",
            "occurred_at": EPOCH,
            "payload": {"minutes": "3", "screen": "home"},
        }
    )
    assert isinstance(parsed(usage, parser), Event)  # other types still evolve


def _run(ws: Path, url: str, lines: list[bytes], monkeypatch: pytest.MonkeyPatch) -> dict:
    monkeypatch.setenv("TENURE_DATABASE_URL", url)
    path = ws / "events.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    result = runner.invoke(app, ["run", "--events", str(path), "-w", str(ws), "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_kept_values_are_stored_read_back_and_shown(
    store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = tmp_path / "ws"
    workspace(ws, store_url)
    summary = _run(ws, store_url, [purchase()], monkeypatch)
    assert (summary["accepted"], summary["rejected"]) == (1, 0)
    shown = runner.invoke(app, ["customers", "show", "c-1", "-w", str(ws), "--json"])
    assert shown.exit_code == 0, shown.output
    [e] = json.loads(shown.stdout)["events"]
    assert e["payload"]["coupon"] == "SPRING" and e["payload"]["amount"] == 19.9
    assert e["context"]["library"] == {"name": "analytics-python"}
    # Personal-looking keys, and whatever is under `traits`, are kept as digests.
    assert is_digest(e["context"]["ip"]) and is_digest(e["context"]["traits"]["name"])
    assert is_digest(e["context"]["traits"]["plan"])
    store = Store(store_url)
    try:
        with store.reader() as conn:
            [back] = list(repo.iter_events(conn))
    finally:
        store.close()
    assert back.extra == {"coupon": "SPRING", "channel": "app"} and back.payload.amount == 19.9


COUPON_POLICY = parse_policy(
    {
        **default_policy().model_dump(mode="json"),
        "id": "coupon-savers",
        "trigger": {"risk_at_least": 0.0, "when": "event.payload.coupon == 'SPRING'"},
        "eligibility": ["event.context.library.name == 'analytics-python'"],
    }
)


def test_kept_values_are_usable_in_a_policy_condition(tmp_path: Path) -> None:
    parser = LineParser()
    events = [
        parsed(purchase("p-1", "with-coupon"), parser),
        parsed(purchase("p-2", "without", payload={"amount": 5}), parser),
    ]
    assert all(isinstance(e, Event) for e in events)
    store = Store(f"sqlite:///{tmp_path / 't.db'}")
    Pipeline(store, COUPON_POLICY, clock=closed(events)).run(iter(events), "t")  # type: ignore[arg-type]
    with store.reader() as conn:
        decided = {r["customer_id"] for r in queries.decisions(conn, limit=100)}
        body = queries.audit_body(conn, queries.decisions(conn, limit=1)[0]["decision_id"])
    store.close()
    assert decided == {"with-coupon"}
    assert body is not None and body["lineage"]["trigger"]["payload"]["coupon"] == "SPRING"

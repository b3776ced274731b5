"""Tests for the deterministic synthetic population generator."""

from __future__ import annotations

import datetime
import pathlib
from collections import defaultdict

import orjson
import pytest

from tenure.sim.population import PopulationSpec, generate, truth, write_jsonl

SMALL = PopulationSpec(customers=200, days=60, seed=11)

ENVELOPE_KEYS = {
    "event_id",
    "type",
    "customer_id",
    "occurred_at",
    "source",
    "partner_id",
    "schema_version",
    "payload",
}

PAYLOAD_KEYS: dict[str, set[str]] = {
    "usage": {"sessions", "minutes", "feature"},
    "purchase": {"amount", "currency", "order_id", "items"},
    "subscription.started": {"plan", "mrr"},
    "subscription.renewed": {"plan", "mrr"},
    "subscription.cancel_requested": {"reason"},
    "subscription.cancelled": {"reason"},
    "payment.failed": {"amount", "reason", "attempt"},
    "support.ticket": {"ticket_id", "status", "sentiment", "topic"},
    "consent.granted": {"channel", "purpose", "partner_id"},
    "consent.revoked": {"channel", "purpose", "partner_id"},
    "profile.updated": {"timezone", "plan", "segment"},
    "channel.opened": {"channel", "message_id", "campaign"},
    "channel.clicked": {"channel", "message_id", "campaign"},
}


@pytest.fixture(scope="module")
def events() -> list[dict[str, object]]:
    return list(generate(SMALL))


@pytest.fixture(scope="module")
def facts() -> dict[str, dict[str, object]]:
    return truth(SMALL)


def _parse(ts: object) -> datetime.datetime:
    assert isinstance(ts, str)
    return datetime.datetime.fromisoformat(ts)


def test_same_spec_gives_identical_bytes(tmp_path: pathlib.Path) -> None:
    first, second, other = tmp_path / "a.jsonl", tmp_path / "b.jsonl", tmp_path / "c.jsonl"
    count = write_jsonl(SMALL, first)
    assert write_jsonl(SMALL, second) == count > 0
    assert first.read_bytes() == second.read_bytes()
    write_jsonl(PopulationSpec(customers=200, days=60, seed=12), other)
    assert other.read_bytes() != first.read_bytes()


def test_lines_are_sorted_key_json(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "h.jsonl"
    write_jsonl(PopulationSpec(customers=20, days=20), path)
    for line in path.read_bytes().splitlines():
        event = orjson.loads(line)
        assert orjson.dumps(event, option=orjson.OPT_SORT_KEYS) == line


def test_sorted_unique_and_utc(events: list[dict[str, object]]) -> None:
    stamps = [e["occurred_at"] for e in events]
    assert all(isinstance(ts, str) and ts.endswith("Z") and len(ts) == 20 for ts in stamps)
    parsed = [_parse(ts) for ts in stamps]
    assert all(dt.utcoffset() == datetime.timedelta(0) for dt in parsed)
    assert parsed == sorted(parsed)
    ids = [e["event_id"] for e in events]
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids)
    assert ids[0] == "e-11-00000001"


def test_envelope_and_payload_shapes(events: list[dict[str, object]]) -> None:
    sources = {"usage": "app", "purchase": "pos", "support.ticket": "support"}
    for event in events:
        assert set(event) == ENVELOPE_KEYS
        assert event["schema_version"] == 1
        etype = event["type"]
        assert isinstance(etype, str)
        payload = event["payload"]
        assert isinstance(payload, dict)
        assert set(payload) == PAYLOAD_KEYS[etype], etype
        if etype in sources:
            assert event["source"] == sources[etype]
        if etype != "purchase":
            assert event["partner_id"] is None
    dealers = {e["partner_id"] for e in events if e["type"] == "purchase"} - {None}
    assert dealers and all(isinstance(d, str) and d.startswith("dealer-") for d in dealers)


def test_payload_values(events: list[dict[str, object]]) -> None:
    opened: set[object] = set()
    for event in events:
        payload = event["payload"]
        assert isinstance(payload, dict)
        if event["type"] == "usage":
            assert payload["sessions"] >= 1 and payload["minutes"] >= 0
        elif event["type"] == "purchase":
            assert payload["amount"] > 0 and payload["items"] >= 1
            assert round(payload["amount"], 2) == payload["amount"]
        elif event["type"] == "support.ticket":
            assert -1.0 <= payload["sentiment"] <= 1.0
            if payload["status"] == "open":
                opened.add(payload["ticket_id"])
            else:
                assert payload["ticket_id"] in opened
        elif event["type"] == "payment.failed":
            assert payload["attempt"] >= 1


def test_every_customer_starts_with_subscription_then_profile(
    events: list[dict[str, object]], facts: dict[str, dict[str, object]]
) -> None:
    per_customer: dict[object, list[dict[str, object]]] = defaultdict(list)
    for event in events:
        per_customer[event["customer_id"]].append(event)
    assert set(per_customer) == set(facts)
    for cid, history in per_customer.items():
        assert [e["type"] for e in history[:2]] == ["subscription.started", "profile.updated"]
        profile = history[1]["payload"]
        assert isinstance(profile, dict)
        assert profile["timezone"] == facts[str(cid)]["timezone"]


def test_declining_share_and_usage_signal(
    events: list[dict[str, object]], facts: dict[str, dict[str, object]]
) -> None:
    declining = {cid for cid, f in facts.items() if f["declining"]}
    assert 0.15 <= len(declining) / len(facts) <= 0.35
    cutoff = datetime.datetime.combine(
        SMALL.start + datetime.timedelta(days=SMALL.days - 14), datetime.time(), datetime.UTC
    )
    recent: dict[str, int] = dict.fromkeys(facts, 0)
    for event in events:
        if event["type"] == "usage" and _parse(event["occurred_at"]) >= cutoff:
            recent[str(event["customer_id"])] += 1
    sick = [recent[c] for c in declining]
    healthy = [n for c, n in recent.items() if c not in declining]
    assert sum(sick) / len(sick) < 0.6 * (sum(healthy) / len(healthy))


def test_cancelled_customers_fall_silent(
    events: list[dict[str, object]], facts: dict[str, dict[str, object]]
) -> None:
    cancelled_at: dict[object, int] = {}
    for position, event in enumerate(events):
        if event["type"] == "subscription.cancelled":
            cancelled_at[event["customer_id"]] = position
    expected = {cid for cid, f in facts.items() if f["cancelled"]}
    assert expected and set(cancelled_at) == expected
    assert all(facts[str(c)]["declining"] for c in expected)
    for position, event in enumerate(events):
        cut = cancelled_at.get(event["customer_id"])
        assert cut is None or position <= cut, event


def test_limit_truncates(tmp_path: pathlib.Path) -> None:
    spec = PopulationSpec(customers=30, days=20)
    full, cut = tmp_path / "full.jsonl", tmp_path / "cut.jsonl"
    total = write_jsonl(spec, full)
    assert write_jsonl(spec, cut, limit=25) == 25 < total
    assert cut.read_bytes().splitlines() == full.read_bytes().splitlines()[:25]
    assert write_jsonl(spec, cut, limit=0) == 0


def test_empty_population(tmp_path: pathlib.Path) -> None:
    spec = PopulationSpec(customers=0)
    assert list(generate(spec)) == []
    assert truth(spec) == {}
    path = tmp_path / "empty.jsonl"
    assert write_jsonl(spec, path) == 0
    assert path.read_bytes() == b""

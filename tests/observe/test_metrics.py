"""`/metrics` after some activity: the store's gauges (journeys, deliveries, failures, circuits,
ledger, budget, decisions) and the request and batch figures, with their values."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from tenure.api.app import create_app
from tenure.api.auth import create_token
from tenure.channels import courier as courier_module
from tenure.channels.adapters import ChannelSettings, Message, Retryable
from tenure.channels.courier import Courier
from tenure.config import resolve
from tenure.observe.metrics import registry_for
from tenure.runtime.clock import FixedClock
from tenure.services import policies
from tenure.store.db import Store
from tests.fixtures.journeys import POLICY
from tests.fixtures.loyalty import CONTRACT


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample of the exposition (None when it is absent)."""
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    return None


def event(eid: str, type_: str, day: int, customer: str = "bo", **payload: object) -> dict:
    return {
        "event_id": eid,
        "type": type_,
        "customer_id": customer,
        "partner_id": "dealer-1",
        "occurred_at": f"2026-03-{day:02d}T10:00:00Z",
        "payload": payload,
    }


HISTORY = [
    event("e1", "consent.granted", 1, channel="email", purpose="marketing"),
    event("e2", "subscription.started", 1, plan="pro", mrr=50.0),
    event("e3", "purchase", 2, amount=200.0),  # 0.5 points per unit under the contract: 100
    event("e4", "subscription.cancel_requested", 20, plan="pro", mrr=50.0),
]


@pytest.fixture
def api(tmp_path: Path):
    ws = tmp_path / "ws"
    (ws / "contracts").mkdir(parents=True)
    (ws / "contracts" / "acme.yaml").write_text(yaml.safe_dump(CONTRACT))
    settings = resolve(ws)
    store = Store(settings.database_url)
    now = dt.datetime.now(dt.UTC)
    with store.transaction() as conn:
        token = create_token(conn, "ingest", None, "", now)[1]
        version, _ = policies.register(conn, POLICY, "ana", now)
        policies.promote(conn, version, "active", "bo", None, now)
    # Live time a day and three hours after the history's newest event (2026-03-20 10:00): the
    # watermark (the clock less the lateness) has passed the close of every day of the history,
    # so the instants its events make are decided when they are posted.
    clock = FixedClock(dt.datetime(2026, 3, 21, 13, tzinfo=dt.UTC))
    with TestClient(create_app(settings, clock)) as client:
        yield client, {"Authorization": f"Bearer {token}"}, store
    store.close()


def test_metrics_expose_the_store_and_the_process_after_activity(api, tmp_path, monkeypatch):
    client, headers, store = api
    before = client.get("/metrics").text
    batches_before = sample(before, "tenure_pipeline_batch_seconds_count") or 0.0

    r = client.post("/v1/events", json=[*HISTORY, HISTORY[0]], headers=headers)
    assert r.status_code == 200
    (decision,) = r.json()["decisions"]
    assert decision["status"] == "action" and decision["action_id"] == "offer"
    # Decided at the close of the day of the cancel request, the event it names.
    assert (decision["decided_at"], decision["trigger_event_id"]) == ("2026-03-21T00:00:00Z", "e4")

    # A channel that keeps failing (3 attempts, then dead; the circuit opens at 3 failures in a
    # row) and one that delivers.
    class Down:
        def send(self, message: Message) -> None:
            raise Retryable("503 from the gateway")

    real = courier_module.make_channel
    monkeypatch.setattr(
        courier_module,
        "make_channel",
        lambda name, s, d: Down() if name == "sms" else real(name, s, d),
    )
    sms = ChannelSettings(max_attempts=3, failure_threshold=3, open_for_s=3600)
    courier = Courier(store, {"sms": sms}, tmp_path / "outbox", sleep=lambda _: None)
    did = decision["decision_id"]
    assert courier.deliver(Message(f"{did}:sms:1", did, "bo", "sms", "offer")).status == "dead"
    assert courier.deliver(Message(f"{did}:mail:1", did, "bo", "email", "offer")).status == (
        "delivered"
    )
    assert courier.deliver(Message(f"{did}:sms:2", did, "bo", "sms", "offer")).status == "held"

    got = client.get("/metrics", headers={"X-Correlation-ID": "scrape-1"})
    assert got.headers["x-correlation-id"] == "scrape-1"
    text = got.text
    assert sample(text, "tenure_store_up") == 1
    # Ingest outcomes and decisions (this process's API).
    assert sample(text, "tenure_events_total", outcome="accepted") == 4
    assert sample(text, "tenure_events_total", outcome="duplicate") == 1
    assert sample(text, "tenure_decisions_total", status="action") == 1
    # The store's view: one journey waiting for the dispatcher, the offer's budget reserved.
    assert sample(text, "tenure_journeys", state="pending") == 1
    assert sample(text, "tenure_journeys", state="running") == 0
    assert sample(text, "tenure_budget_spent", policy="journeys", period="2026-03") == 4.0
    assert sample(text, "tenure_recorded_decisions", mode="live", status="action") == 1
    # Deliveries by channel and status, failed attempts, circuits.
    assert sample(text, "tenure_deliveries", kind="deliver", channel="sms", status="dead") == 1
    assert sample(text, "tenure_deliveries", kind="deliver", channel="sms", status="held") == 1
    assert sample(text, "tenure_deliveries", channel="email", status="delivered") == 1
    assert sample(text, "tenure_delivery_failed_attempts", channel="sms") == 3
    assert sample(text, "tenure_delivery_failed_attempts", channel="email") == 0
    assert sample(text, "tenure_channel_circuit", channel="sms", state="open") == 1
    assert sample(text, "tenure_channel_circuit", channel="sms", state="closed") == 0
    assert sample(text, "tenure_channel_circuit", channel="email", state="closed") == 1
    assert sample(text, "tenure_channel_consecutive_failures", channel="sms") == 3
    # The ledger: the purchase's points, posted.
    assert sample(text, "tenure_ledger_points", kind="accrue", status="posted") == 100
    assert sample(text, "tenure_ledger_transfers", kind="accrue", status="posted") >= 1
    # This process: the courier's receipts, the pipeline's batch, the request latency by route.
    assert sample(text, "tenure_courier_receipts_total", channel="sms", status="dead") >= 1
    assert sample(text, "tenure_pipeline_batch_seconds_count") == batches_before + 1
    assert (
        sample(
            text,
            "tenure_http_request_seconds_count",
            method="POST",
            route="/v1/events",
            status="200",
        )
        == 1
    )


def test_a_store_that_fails_is_reported_not_raised(api):
    client, _, _ = api
    app_store = client.app.state.store
    original = app_store.reader

    def broken():
        from sqlalchemy.exc import OperationalError

        raise OperationalError("select", {}, Exception("gone"))

    app_store.reader = broken
    try:
        text = client.get("/metrics").text
    finally:
        app_store.reader = original
    assert sample(text, "tenure_store_up") == 0
    assert sample(text, "tenure_journeys", state="pending") is None


def test_a_request_id_and_each_event_id_are_on_the_api_lines(api, logs):
    client, headers, _ = api
    r = client.post("/v1/events", json=HISTORY, headers={**headers, "X-Correlation-ID": "req-42"})
    assert r.headers["x-correlation-id"] == "req-42"
    (decided,) = logs.lines(event="decision made")
    # The request's id, and the event's own id for what the decision causes later.
    # (Decided at the close of the cancel request's day: e4 is the newest event of that day.)
    assert (decided["request_id"], decided["correlation_id"]) == ("req-42", "e4")
    accepted = logs.lines(event="event accepted", request_id="req-42")
    assert [x["correlation_id"] for x in accepted] == ["e1", "e2", "e3", "e4"]
    (request,) = logs.lines(event="request", route="/v1/events")
    assert (request["status"], request["request_id"]) == (200, "req-42")
    # An id that is not a plain token is replaced, not echoed.
    odd = client.post("/v1/events", json=[], headers={**headers, "X-Correlation-ID": "a b\tc"})
    assert (
        odd.headers["x-correlation-id"] not in ("a b\tc", "")
        and " " not in (odd.headers["x-correlation-id"])
    )


def test_the_worker_registry_serves_the_same_store_gauges(api):
    client, headers, store = api
    client.post("/v1/events", json=HISTORY, headers=headers)
    text = generate_latest(registry_for(store)).decode()
    assert sample(text, "tenure_journeys", state="pending") == 1
    assert sample(text, "tenure_budget_spent", policy="journeys", period="2026-03") == 4.0
    assert "tenure_pipeline_batch_seconds" in text

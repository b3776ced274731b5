"""Guardrails that look at journeys: concurrent journeys per customer, caps counting their sends."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from sqlalchemy import select

from tenure.audit.replay import replay
from tenure.policy.guardrails import GuardrailSettings
from tenure.runtime.pipeline import Pipeline
from tenure.store import acts, queries
from tenure.store import schema as t
from tenure.store.db import Store
from tests.fixtures.journeys import POLICY, history
from tests.helpers import T0, closed

CANCEL_AT = T0 + dt.timedelta(days=30)
# Decided at the close of the cancellation's day (midnight UTC after it).
DECIDED_AT = dt.datetime.combine(CANCEL_AT.date() + dt.timedelta(days=1), dt.time(), dt.UTC)


def journey_row(customer: str, status: str, sends: list) -> dict:
    return {
        "decision_id": f"d-earlier-{customer}",
        "customer_id": customer,
        "journey_id": "offer-reminder-expiry",
        "journey_hash": "x",
        "action_id": "offer",
        "channel": "email",
        "status": status,
        "listens": ["channel.redeemed"],
        "sends": sends,
        "started_at": CANCEL_AT - dt.timedelta(days=2),
        "updated_at": CANCEL_AT - dt.timedelta(hours=1),
    }


def decide(tmp_path: Path, rows: list[dict], guardrails: GuardrailSettings) -> dict:
    store = Store(f"sqlite:///{tmp_path / 'g.db'}")
    with store.transaction() as conn:
        acts.insert_journeys(conn, rows)
    events = history("c-1")
    Pipeline(store, POLICY, guardrails=guardrails, clock=closed(events)).run(iter(events), "t")
    with store.reader() as conn:
        (row,) = conn.execute(select(t.decisions)).mappings().all()
        body = queries.audit_body(conn, row["decision_id"])
    store.close()
    return {**row, "replays": replay(body, POLICY).to_record() == body["decision"]}


def test_a_customer_with_a_running_journey_gets_no_second_one(tmp_path: Path) -> None:
    row = decide(tmp_path, [journey_row("c-1", "running", [])], GuardrailSettings(control_share=0))
    assert (row["status"], row["guardrail"]) == ("suppressed", "concurrent_journeys")
    assert "1 journey(s) still running; at most 1" in row["reason"]
    assert row["replays"]  # the count is in the lineage, so replay agrees


def test_the_limit_is_a_workspace_setting(tmp_path: Path) -> None:
    guardrails = GuardrailSettings(control_share=0, max_concurrent_journeys=2)
    assert decide(tmp_path, [journey_row("c-1", "running", [])], guardrails)["status"] == "action"


def test_a_journeys_follow_up_send_counts_toward_the_caps(tmp_path: Path) -> None:
    # A reminder the journey sends on the day the new decision would deliver.
    reminder = [[int((DECIDED_AT + dt.timedelta(minutes=30)).timestamp()), "email"]]
    row = decide(
        tmp_path, [journey_row("c-1", "completed", reminder)], GuardrailSettings(control_share=0)
    )
    assert (row["status"], row["guardrail"]) == ("suppressed", "frequency_cap")
    assert "cap 1 per day reached" in row["reason"]

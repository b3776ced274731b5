"""One customer event's consequences, followed through logs and traces: ingest, decision, the
journey on Temporal's time-skipping server, its activities and the courier's deliveries."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

from sqlalchemy import select
from temporalio.testing import WorkflowEnvironment

from tenure.runtime.dispatch import Dispatcher
from tenure.runtime.temporal import time_skipping_server
from tenure.runtime.worker import courier_for, journey_worker
from tenure.store import schema as t
from tenure.store.db import Store
from tests.fixtures.journeys import GUARDRAILS, history, ingest, sent


def run_offer_journey(tmp_path: Path) -> str:
    """Decide an offer for a customer asking to cancel and run its journey to the end (8 days,
    skipped); the decision id."""

    async def main() -> str:
        store = Store(f"sqlite:///{tmp_path / 'tenure.db'}")
        env = await WorkflowEnvironment.start_time_skipping(
            test_server_existing_path=time_skipping_server()
        )
        try:
            courier = courier_for(store, tmp_path, {})
            async with journey_worker(env.client, store, courier, GUARDRAILS, threads=4):
                ingest(store, history("c-1"))
                assert await Dispatcher(store, env.client).dispatch() == {"started": 1}
                with store.reader() as conn:
                    (decision_id,) = conn.execute(select(t.journeys.c.decision_id)).scalars()
                await env.sleep(dt.timedelta(days=8))
                result = await env.client.get_workflow_handle(decision_id).result()
                assert result["outcome"] == "expired"
            return decision_id
        finally:
            await env.shutdown()
            store.close()

    decision_id = asyncio.run(main())
    assert [m["template"] for m in sent(tmp_path)] == ["offer", "reminder"]
    return decision_id


def test_one_correlation_id_from_the_event_to_every_delivery(tmp_path: Path, logs) -> None:
    decision_id = run_offer_journey(tmp_path)
    trigger = next(e.event_id for e in history("c-1") if e.type == "subscription.cancel_requested")

    (decided,) = logs.lines(event="decision made", decision_id=decision_id)
    assert decided["correlation_id"] == trigger and decided["status"] == "action"
    chain = logs.lines(correlation_id=trigger)
    what = [line["event"] for line in chain]
    # The event, its decision, the dispatcher's start, every activity and every delivery.
    assert what[:3] == ["event accepted", "decision made", "journey started"]
    assert what.count("activity executing") >= 4  # offer, grant, reminder, revoke (+ expiry)
    assert what.count("delivery delivered") == 2  # the offer and the reminder
    assert "journey completed" in what
    # Every line after the decision names the journey too.
    assert all(line["decision_id"] == decision_id for line in chain[1:])
    deliveries = [line for line in chain if line["event"] == "delivery delivered"]
    assert [d["template"] for d in deliveries] == ["offer", "reminder"]
    assert {d["logger"] for d in chain} >= {
        "tenure.pipeline",
        "tenure.dispatch",
        "tenure.activities",
        "tenure.courier",
    }
    # No line of the journey lacks it: each activity binds it for its thread.
    journey_lines = [x for x in logs.lines() if x.get("decision_id") == decision_id]
    assert all(x.get("correlation_id") == trigger for x in journey_lines)
    # Every line is JSON with a time, a level and a logger.
    assert all({"timestamp", "level", "logger", "event"} <= set(x) for x in logs.lines())


def test_activity_spans_continue_the_decision_trace(tmp_path: Path, spans) -> None:
    decision_id = run_offer_journey(tmp_path)
    finished = spans()
    by_name: dict[str, list] = {}
    for s in finished:
        by_name.setdefault(s.name, []).append(s)

    (decision,) = [
        s for s in by_name["tenure.decision"] if s.attributes["tenure.decision_id"] == decision_id
    ]
    trace_id = decision.context.trace_id
    (batch,) = [
        s
        for s in by_name["tenure.pipeline.batch"]
        if s.context.span_id in {link.context.span_id for link in decision.links}
    ]
    assert batch.context.trace_id != trace_id  # linked, not one trace for a whole batch
    (dispatch,) = by_name["tenure.dispatch journey.start"]
    assert dispatch.context.trace_id == trace_id
    assert dispatch.parent.span_id == decision.context.span_id
    activities = by_name["RunActivity:tenure.act"]
    assert len(activities) >= 4
    assert {s.context.trace_id for s in activities} == {trace_id}
    sends = by_name["tenure.courier.deliver"]
    assert [s.attributes["tenure.status"] for s in sends] == ["delivered", "delivered"]
    assert {s.context.trace_id for s in sends} == {trace_id}
    # Each send hangs below the activity that made it.
    activity_ids = {s.context.span_id for s in activities}
    assert all(s.parent.span_id in activity_ids for s in sends)

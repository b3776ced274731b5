"""Journeys on Temporal's time-skipping test server: a 7-day journey runs in well under a second."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

from sqlalchemy import select
from temporalio.testing import WorkflowEnvironment

from tenure.journeys.library import workspace_library
from tenure.journeys.workflow import JourneyWorkflow
from tenure.policy.model import parse_policy
from tenure.runtime.dispatch import Dispatcher
from tenure.runtime.pipeline import Pipeline
from tenure.runtime.temporal import time_skipping_server
from tenure.runtime.worker import courier_for, journey_worker
from tenure.store import acts, repo
from tenure.store import schema as t
from tenure.store.db import Store
from tests.fixtures.journeys import GUARDRAILS, POLICY, history, ingest, sent
from tests.helpers import closed, ev


def spent(store: Store) -> float:
    with store.reader() as conn:
        return sum(conn.execute(select(t.budgets.c.spent)).scalars())


async def _with_worker(tmp_path: Path, body) -> None:
    store = Store(f"sqlite:///{tmp_path / 'tenure.db'}")
    courier = courier_for(store, tmp_path, {})
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=time_skipping_server()
    )
    try:
        async with journey_worker(env.client, store, courier, GUARDRAILS, threads=4):
            await body(env, store)
    finally:
        await env.shutdown()
        store.close()


def test_unused_offer_is_reminded_then_revoked_and_its_budget_released(tmp_path: Path) -> None:
    async def body(env: WorkflowEnvironment, store: Store) -> None:
        ingest(store, history("c-1"))
        assert spent(store) == 4.0
        counts = await Dispatcher(store, env.client).dispatch()
        assert counts == {"started": 1}
        with store.reader() as conn:
            (decision_id,) = conn.execute(select(t.journeys.c.decision_id)).scalars()
        handle = env.client.get_workflow_handle(decision_id)
        started = dt.datetime.now(dt.UTC)
        await env.sleep(dt.timedelta(days=8))  # skipped, not waited
        result = await handle.result()
        assert result["outcome"] == "expired"
        # Seven simulated days passed: reminder at day 3, revocation at day 7.
        times = [dt.datetime.fromisoformat(h["at"]) for h in result["history"]]
        assert dt.timedelta(days=7) <= times[-1] - times[0] < dt.timedelta(days=7, hours=1)
        assert times[-1] - started > dt.timedelta(days=6, hours=23)  # yet the test took a second
        assert [m["template"] for m in sent(tmp_path)] == ["offer", "reminder"]
        assert spent(store) == 0.0  # the reservation went back to the budget
        with store.reader() as conn:
            grant = acts.delivery(conn, f"{decision_id}:grant-offer:1")
            row = acts.journey(conn, decision_id)
        assert grant["status"] == "revoked"
        assert (row["status"], row["outcome"], row["step"]) == ("completed", "expired", "expired")
        # Running the dispatcher over the same rows again starts nothing twice.
        with store.transaction() as conn:
            conn.execute(t.outbox.update().values(dispatched_at=None))
        again = await Dispatcher(store, env.client).dispatch()
        assert again == {"already started": 1}
        assert len(sent(tmp_path)) == 2

    asyncio.run(_with_worker(tmp_path, body))


def test_redeemed_signal_takes_the_other_branch(tmp_path: Path) -> None:
    async def body(env: WorkflowEnvironment, store: Store) -> None:
        ingest(store, history("c-2"))
        await Dispatcher(store, env.client).dispatch()
        with store.reader() as conn:
            (decision_id,) = conn.execute(select(t.journeys.c.decision_id)).scalars()
        handle = env.client.get_workflow_handle(decision_id)
        # The journey stands at its first wait (queryable), the offer already sent.
        for _ in range(100):
            state = await handle.query(JourneyWorkflow.state)
            if state["pause"]:
                break
            await asyncio.sleep(0.05)
        assert state["step"] == "wait-first" and state["pause"]["kind"] == "wait"
        # The customer redeems: the event goes through the pipeline, which signals the journey.
        ingest(store, [ev("channel.redeemed", "c-2", at=31, channel="email")])
        with store.reader() as conn:
            kinds = [r["kind"] for r in repo.rows(conn, select(t.outbox))]
        assert kinds.count("journey.signal") == 1
        assert await Dispatcher(store, env.client).dispatch() == {"signalled": 1}
        await env.sleep(dt.timedelta(days=8))
        result = await handle.result()
        assert result["outcome"] == "redeemed"
        assert [m["template"] for m in sent(tmp_path)] == ["offer"]
        assert spent(store) == 4.0  # a redeemed offer keeps its cost
        with store.reader() as conn:
            assert acts.delivery(conn, f"{decision_id}:grant-offer:1")["status"] == "granted"

    asyncio.run(_with_worker(tmp_path, body))


def test_follow_up_sends_count_toward_the_contact_caps(tmp_path: Path) -> None:
    """A reminder that would be a second contact in one day is suppressed, with the cap named."""
    (tmp_path / "journeys").mkdir()
    (tmp_path / "journeys" / "twice.yaml").write_text(
        "id: twice\nsteps:\n"
        "  - {id: first, kind: send, template: offer}\n"
        "  - {id: pause, kind: wait, for: [channel.redeemed], timeout: 1m, next: done}\n"
        "  - {id: again, kind: send, template: reminder}\n"
        "  - {id: done, kind: exit, outcome: done}\n"
    )
    policy = parse_policy(
        {
            **POLICY.model_dump(mode="json"),
            "actions": [{**POLICY.actions[0].model_dump(), "journey": "twice"}],
        }
    )

    async def body(env: WorkflowEnvironment, store: Store) -> None:
        # Asks to cancel yesterday: decided at the close of that day, today at 00:00 UTC.
        events = history("c-3", dt.datetime.now(dt.UTC) - dt.timedelta(days=31))
        Pipeline(
            store,
            policy,
            guardrails=GUARDRAILS,
            journeys=workspace_library(tmp_path),
            clock=closed(events),
        ).run(iter(events), "test")
        await Dispatcher(store, env.client).dispatch()
        with store.reader() as conn:
            (decision_id,) = conn.execute(select(t.journeys.c.decision_id)).scalars()
        await env.sleep(dt.timedelta(days=1))  # past any quiet-hours deferral too
        assert (await env.client.get_workflow_handle(decision_id).result())["outcome"] == "done"
        with store.reader() as conn:
            again = acts.delivery(conn, f"{decision_id}:again:1")
        assert again["status"] == "suppressed" and "cap 1 per day" in again["last_error"]
        assert [m["template"] for m in sent(tmp_path)] == ["offer"]

    asyncio.run(_with_worker(tmp_path, body))


def test_a_journey_that_cannot_run_is_recorded_as_failed(tmp_path: Path) -> None:
    from temporalio.client import WorkflowFailureError

    async def body(env: WorkflowEnvironment, store: Store) -> None:
        ingest(store, history("c-4"))
        with store.transaction() as conn:  # a spec damaged after the decision was made
            (row,) = conn.execute(select(t.outbox)).mappings().all()
            payload = {**row["payload"], "journey": {"id": "broken", "steps": []}}
            conn.execute(t.outbox.update().values(payload=payload))
        await Dispatcher(store, env.client).dispatch()
        handle = env.client.get_workflow_handle(row["decision_id"])
        try:
            await handle.result()
            raise AssertionError("the journey should have failed")
        except WorkflowFailureError:
            pass
        with store.reader() as conn:
            journey = acts.journey(conn, row["decision_id"])
        assert (journey["status"], journey["outcome"]) == ("failed", "failed")
        assert "ValidationError" in journey["state"]["history"][-1]["what"]

    asyncio.run(_with_worker(tmp_path, body))


def test_an_event_before_the_journey_started_still_reaches_it(tmp_path: Path) -> None:
    """Decision, then the redemption, both before any dispatch: one page starts, then signals."""

    async def body(env: WorkflowEnvironment, store: Store) -> None:
        ingest(store, history("c-5"))
        ingest(store, [ev("channel.redeemed", "c-5", at=30.5, channel="email")])
        counts = await Dispatcher(store, env.client).dispatch()
        assert counts == {"started": 1, "signalled": 1}
        with store.reader() as conn:
            (decision_id,) = conn.execute(select(t.journeys.c.decision_id)).scalars()
        await env.sleep(dt.timedelta(days=8))
        assert (await env.client.get_workflow_handle(decision_id).result())["outcome"] == "redeemed"

    asyncio.run(_with_worker(tmp_path, body))


def test_points_a_journey_grants_are_posted_and_clawed_back_when_it_compensates(
    tmp_path: Path,
) -> None:
    from tenure.loyalty.ledger import member_account, verify
    from tenure.store import ledger

    (tmp_path / "journeys").mkdir()
    (tmp_path / "journeys" / "points.yaml").write_text(
        "id: points\nsteps:\n"
        "  - {id: give, kind: grant, points: 200}\n"
        "  - {id: pause, kind: wait, for: [channel.redeemed], timeout: 1d,"
        " on_timeout: undo, next: kept}\n"
        "  - {id: undo, kind: compensate, next: lapsed}\n"
        "  - {id: lapsed, kind: exit, outcome: lapsed}\n"
        "  - {id: kept, kind: exit, outcome: kept}\n"
    )
    policy = parse_policy(
        {
            **POLICY.model_dump(mode="json"),
            "actions": [{**POLICY.actions[0].model_dump(), "journey": "points"}],
        }
    )

    async def body(env: WorkflowEnvironment, store: Store) -> None:
        Pipeline(
            store,
            policy,
            guardrails=GUARDRAILS,
            journeys=workspace_library(tmp_path),
            clock=closed(history("c-6")),
        ).run(iter(history("c-6")), "test")
        await Dispatcher(store, env.client).dispatch()
        with store.reader() as conn:
            (decision_id,) = conn.execute(select(t.journeys.c.decision_id)).scalars()
        handle = env.client.get_workflow_handle(decision_id)
        for _ in range(200):  # the grant's activity has run once the journey row shows the wait
            with store.reader() as conn:
                if acts.journey(conn, decision_id)["step"] == "pause":
                    break
            await asyncio.sleep(0.05)
        member = member_account("default", "c-6")
        with store.reader() as conn:
            assert ledger.whole_book(conn).account(member).balance == 200
        await env.sleep(dt.timedelta(days=2))
        assert (await handle.result())["outcome"] == "lapsed"
        with store.reader() as conn:
            book = ledger.whole_book(conn)
        assert book.account(member).balance == 0 and verify(book) is None

    asyncio.run(_with_worker(tmp_path, body))


def test_a_live_redemption_reaches_a_journey_dispatched_after_a_replayed_history(
    tmp_path: Path,
) -> None:
    """A replayed history (months old) decides an offer; the worker starts its journey now, in
    wall time; the customer redeems now: the live event reaches the journey, which ends
    redeemed, and the journey's listed end is in wall time like its waits."""

    async def body(env: WorkflowEnvironment, store: Store) -> None:
        ingest(store, history("c-9"))  # March: long before the wall clock
        assert await Dispatcher(store, env.client).dispatch() == {"started": 1}
        with store.reader() as conn:
            (row,) = acts.journeys(conn)
        now = dt.datetime.now(dt.UTC)
        assert row["ends_by"] > now + dt.timedelta(days=6)  # moved with the live start
        live = ev("channel.redeemed", "c-9", at=now, channel="email")
        ingest(store, [live])
        assert await Dispatcher(store, env.client).dispatch() == {"signalled": 1}
        await env.sleep(dt.timedelta(days=8))
        result = await env.client.get_workflow_handle(row["decision_id"]).result()
        assert result["outcome"] == "redeemed"
        # A second dispatch of the same start moves nothing again.
        with store.transaction() as conn:
            conn.execute(t.outbox.update().values(dispatched_at=None))
            before = acts.journey(conn, row["decision_id"])["ends_by"]
        await Dispatcher(store, env.client).dispatch()
        with store.reader() as conn:
            assert acts.journey(conn, row["decision_id"])["ends_by"] == before

    asyncio.run(_with_worker(tmp_path, body))

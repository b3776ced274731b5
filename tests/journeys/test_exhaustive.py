"""A kind nobody handles fails loudly: in the journey machine and in the outbox dispatcher."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

from tenure.journeys import machine
from tenure.journeys.library import JourneyLibrary
from tenure.journeys.machine import JourneyInput, JourneyState, Start
from tenure.runtime.dispatch import Dispatcher
from tenure.runtime.temporal import time_skipping_server
from tenure.store import acts, repo
from tenure.store.db import Store

SPEC = JourneyLibrary().get("offer-reminder-expiry")
INPUT = JourneyInput(
    decision_id="d-1", customer_id="c-1", action_id="offer", channel="email", cost=1.0
)


@dataclasses.dataclass(frozen=True)
class Teleport:
    """A step kind the machine was never taught."""

    id: str = "teleport"
    next: str | None = "grant-offer"


def test_an_unknown_observation_is_an_error_not_a_no_op() -> None:
    running, _ = machine.step(SPEC, INPUT, JourneyState(), Start(0.0))
    with pytest.raises(AssertionError):
        machine.step(SPEC, INPUT, running, object())  # type: ignore[arg-type]


def test_an_unknown_step_kind_is_an_error_not_skipped() -> None:
    visit = machine._Visit(1, "d-1:teleport:1", 0.0, True)
    with pytest.raises(AssertionError):
        machine._carry_out(SPEC, INPUT, JourneyState(), Teleport(), visit)  # type: ignore[arg-type]


def test_an_outbox_row_of_unknown_kind_stays_pending(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 't.db'}")
    at = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
    with store.transaction() as conn:
        repo.insert_outbox(
            conn,
            [
                {
                    "idempotency_key": "d-1:mystery",
                    "decision_id": "d-1",
                    "kind": "mystery",
                    "payload": {"customer_id": "c-1"},
                    "created_at": at,
                    "attempts": 0,
                }
            ],
        )

    async def dispatch() -> dict[str, int]:
        env = await WorkflowEnvironment.start_time_skipping(
            test_server_existing_path=time_skipping_server()
        )
        try:
            return dict(await Dispatcher(store, env.client).dispatch())
        finally:
            await env.shutdown()

    assert asyncio.run(dispatch()) == {"failed": 1}
    with store.reader() as conn:
        pending = acts.pending_outbox(conn, 10)
    assert [(r["kind"], r["attempts"]) for r in pending] == [("mystery", 1)]
    store.close()

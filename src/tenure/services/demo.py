"""The demo's compressed run: every pending journey on Temporal's time-skipping test server,
with some customers redeeming on the way, so days of journeys pass in seconds."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from temporalio.api.testservice.v1 import SleepRequest
from temporalio.testing import WorkflowEnvironment

from tenure.events.envelope import Event, make_event
from tenure.policy.lifecycle import PolicySet
from tenure.policy.model import Policy
from tenure.runtime.dispatch import Dispatcher
from tenure.runtime.engine import Engine
from tenure.runtime.temporal import (
    quiet_runtime,
    time_skipping_server,
)
from tenure.runtime.worker import courier_for, journey_worker
from tenure.store import acts
from tenure.store.db import Store


@dataclass
class CompressedRun:
    """What the demo's journeys did."""

    started: int = 0
    completed: int = 0
    responded: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0


def _responds(decision_id: str, share: float) -> bool:
    digest = hashlib.sha256(f"respond\x1f{decision_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < share


def _responses(store: Store, respond_share: float) -> list[Event]:
    """Some customers redeem their offer a day after it was decided: their events go through
    the pipeline like any other, which signals the journeys waiting for them."""
    with store.reader() as conn:
        waiting = acts.journeys(conn, limit=1_000_000)
        decided = acts.decision_times(conn)
    chosen: dict[str, dict[str, Any]] = {}
    for j in waiting:
        if (
            j["status"] in acts.OPEN_JOURNEY
            and "channel.redeemed" in j["listens"]
            and _responds(j["decision_id"], respond_share)
        ):
            chosen.setdefault(j["customer_id"], j)
    return [
        make_event(
            "channel.redeemed",
            event_id=f"demo-redeem-{j['decision_id']}",
            customer_id=customer,
            occurred_at=(decided[j["decision_id"]] + dt.timedelta(days=1)).isoformat(),
            payload={"channel": j["channel"]},
        )
        for customer, j in sorted(chosen.items())
    ]


SKIP_DEADLINE = dt.timedelta(minutes=10)  # how long one skip of journey time may take


async def _until_all_end(env: WorkflowEnvironment, store: Store, days: int) -> None:
    """Skip `days` of journey time, then a day at a time until no journey is open (bounded)."""
    await _skip(env, dt.timedelta(days=days))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        with store.reader() as conn:
            if not acts.any_open_journey(conn):
                return
        await _skip(env, dt.timedelta(days=1))


async def _skip(env: WorkflowEnvironment, duration: dt.timedelta) -> None:
    """`env.sleep(duration)` with a deadline a loaded machine meets: the time-skipping server
    answers only once every timer the skip fires has been handled (hundreds of journeys), and
    the call's default deadline ran out before that on two busy cores (`Timeout expired`)."""
    request = SleepRequest()
    request.duration.FromTimedelta(duration)
    await env.client.test_service.unlock_time_skipping_with_sleep(request, timeout=SKIP_DEADLINE)


async def _compressed(
    engine: Engine,
    policy: Policy | PolicySet,
    respond_share: float,
    days: int,
) -> CompressedRun:
    settings, store = engine.workspace.settings, engine.store
    result = CompressedRun()
    start = time.perf_counter()
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=time_skipping_server(), runtime=quiet_runtime()
    )
    try:
        courier = courier_for(store, settings.workspace, settings.channels)
        async with journey_worker(env.client, store, courier, settings.guardrails):
            dispatcher = Dispatcher(
                store, env.client, activity_heartbeat_s=settings.activity_heartbeat_s
            )
            result.started = (await dispatcher.dispatch())["started"]
            responses = _responses(store, respond_share)
            if responses:
                engine.pipeline(policy).run(iter(responses), "demo responses")
                await dispatcher.dispatch()
                result.responded = len(responses)
            await _until_all_end(env, store, days)
    finally:
        await env.shutdown()
    with store.reader() as conn:
        counts_now = acts.journey_counts(conn)
    result.completed = counts_now["status"].get("completed", 0)
    result.outcomes = Counter(counts_now["outcome"])
    result.seconds = time.perf_counter() - start
    return result


def run_compressed(
    engine: Engine,
    policy: Policy | PolicySet,
    respond_share: float = 0.3,
    days: int = 10,
) -> CompressedRun:
    """Run every pending journey on the time-skipping server: `days` of journeys in seconds."""
    return asyncio.run(_compressed(engine, policy, respond_share, days))

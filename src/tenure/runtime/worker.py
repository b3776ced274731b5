"""Workers: the journey workflow and its activities on a task queue, plus the dispatcher loop."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from temporalio import activity
from temporalio.client import Client
from temporalio.worker import Worker

from tenure.channels.adapters import ChannelSettings
from tenure.channels.courier import Courier
from tenure.channels.messages import Letters, Templates, programme_of
from tenure.channels.unsubscribe import unsubscribe_key
from tenure.config import DEFAULT_HEARTBEAT_S
from tenure.journeys.activities import PROGRAMME, JourneyActivities
from tenure.journeys.workflow import JourneyWorkflow
from tenure.observe.tracing import with_tracing
from tenure.policy.guardrails import GuardrailSettings
from tenure.runtime.dispatch import Dispatcher
from tenure.runtime.temporal import TASK_QUEUE
from tenure.store.db import Store
from tenure.times import Clock
from tenure.workspace import load_contracts


def heartbeating_sleep(seconds: float) -> None:
    """Sleep between delivery attempts, heartbeating when inside an activity."""
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        if activity.in_activity():
            activity.heartbeat()
        time.sleep(min(left, 5.0))


def letters_for(workspace: Path) -> Letters:
    """How a workspace's emails and SMS are composed: its templates (then the built-in ones),
    its unsubscribe key, and the programme journeys grant in."""
    programme = programme_of(load_contracts(workspace), PROGRAMME)
    return Letters(Templates.of(workspace), unsubscribe_key(workspace), programme)


def courier_for(store: Store, workspace: Path, channels: dict[str, ChannelSettings]) -> Courier:
    """The courier of a workspace: configured channels, files under `outbox/` for the rest."""
    return Courier(
        store,
        channels,
        workspace / "outbox",
        sleep=heartbeating_sleep,
        letters=letters_for(workspace),
    )


def journey_worker(
    client: Client,
    store: Store,
    courier: Courier,
    guardrails: GuardrailSettings,
    task_queue: str = TASK_QUEUE,
    threads: int = 8,
    clock: Clock | None = None,
) -> Worker:
    """A worker running journeys; activities run in a thread pool (they do blocking I/O).

    The client is traced, so workflows and activities continue the trace of whoever started
    them (the dispatcher, which continues the decision's).
    """
    activities = JourneyActivities(store, courier, guardrails, clock=clock)
    return Worker(
        with_tracing(client),
        task_queue=task_queue,
        workflows=[JourneyWorkflow],
        activities=[activities.act, activities.record, activities.task_status],
        activity_executor=concurrent.futures.ThreadPoolExecutor(threads),
        max_concurrent_activities=threads,
    )


async def serve(
    client: Client,
    store: Store,
    courier: Courier,
    guardrails: GuardrailSettings,
    stop: asyncio.Event,
    interval_s: float = 1.0,
    on_tick: Callable[[Counter[str]], None] | None = None,
    activity_heartbeat_s: float = DEFAULT_HEARTBEAT_S,
    sweep: Callable[[], int] | None = None,
    sweep_every_s: float = 60.0,
) -> None:
    """Run a worker and, every `interval_s`, dispatch the outbox and release held messages;
    every `sweep_every_s`, `sweep` decides the instants the wall clock has passed.

    The sweep is this loop's, not a Temporal Schedule: it is a short database transaction
    (who is due, decide, write), needs no durability of its own (the timers are rows in the
    store, so a sweep missed is done by the next one), and two workers sweeping at once decide
    each instant once (customer locks and instant-derived decision ids)."""
    dispatcher = Dispatcher(store, client, activity_heartbeat_s=activity_heartbeat_s)
    next_sweep = 0.0
    async with journey_worker(client, store, courier, guardrails):
        while not stop.is_set():
            counts = await dispatcher.dispatch()
            if sweep is not None and time.monotonic() >= next_sweep:
                decided = await asyncio.to_thread(sweep)
                if decided:
                    counts["swept"] += decided
                next_sweep = time.monotonic() + sweep_every_s
            released = await asyncio.to_thread(courier.release_held)
            if released:
                counts["released"] += len(released)
            if on_tick is not None:
                on_tick(counts)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval_s)

"""Operating journeys: the live worker, resolving human tasks, and the demo's compressed run."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from temporalio.testing import WorkflowEnvironment

from tenure.config import Settings
from tenure.errors import InputError
from tenure.events.envelope import make_event
from tenure.journeys.inputs import JourneySignal, TaskResolved
from tenure.policy.lifecycle import PolicySet
from tenure.policy.model import Policy
from tenure.runtime.dispatch import Dispatcher
from tenure.runtime.engine import Engine
from tenure.runtime.pipeline import outbox_row
from tenure.runtime.temporal import (
    Temporal,
    connect,
    ensure_server,
    quiet_runtime,
    time_skipping_server,
)
from tenure.runtime.worker import courier_for, journey_worker, serve
from tenure.store import acts, repo
from tenure.store import schema as t
from tenure.store.acts import utc
from tenure.store.db import Store

# ---------------------------------------------------------------- the live worker


class LiveWorker:
    """A worker with its dispatcher loop on a background thread (for `run --live`, `worker`)."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        on_tick: Callable[[Counter[str]], None] | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.on_tick = on_tick
        self.temporal: Temporal | None = None
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self.error: BaseException | None = None

    def start(self) -> Temporal:
        """Reach (or start) Temporal and run the worker until `stop()`."""
        self.temporal = ensure_server(self.settings.workspace)
        self._thread = threading.Thread(target=self._main, name="tenure-worker", daemon=True)
        self._thread.start()
        self._ready.wait(60)
        if self.error is not None:
            raise self.error
        return self.temporal

    def _main(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # reported to the thread that started us
            self.error = exc
            self._ready.set()

    async def _serve(self) -> None:
        assert self.temporal is not None
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        client = await connect(self.temporal)
        courier = courier_for(self.store, self.settings.workspace, self.settings.channels)
        self._ready.set()
        await serve(
            client,
            self.store,
            courier,
            self.settings.guardrails,
            self._stop,
            on_tick=self.on_tick,
            activity_heartbeat_s=self.settings.activity_heartbeat_s,
        )

    def stop(self, stop_server: bool = True) -> None:
        """Stop the worker (and the dev server if this process started it)."""
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(30)
        if stop_server and self.temporal is not None:
            self.temporal.stop()

    def wait(self) -> None:
        """Block until the worker stops (Ctrl-C stops it)."""
        while self._thread is not None and self._thread.is_alive():
            self._thread.join(0.5)


# ---------------------------------------------------------------- human tasks


def resolve_task(
    store: Store, task_id: str, resolution: str, by: str, now: float
) -> dict[str, Any]:
    """Close an open task; a journey waiting on it hears of it through the outbox."""
    if not resolution.strip():
        raise InputError("--resolution must not be empty (e.g. saved, lost)")
    if not by.strip():
        raise InputError("--by must name who resolved the task")
    with store.transaction() as conn:
        row = acts.task(conn, task_id)
        if row is None:
            raise InputError(f"no task {task_id!r} (see `tenure tasks list`)")
        if row["status"] != "open":
            raise InputError(
                f"task {task_id!r} is already {row['status']}"
                + (f" ({row['resolution']} by {row['resolved_by']})" if row["resolution"] else "")
            )
        acts.close_task(
            conn,
            task_id,
            status="resolved",
            resolution=resolution,
            resolved_by=by,
            resolved_at=utc(now),
        )
        if acts.journey(conn, row["decision_id"]) is not None:
            signal = JourneySignal(TaskResolved(now, task_id, resolution, by))
            key = f"{task_id}:resolved"
            repo.insert_outbox(conn, [outbox_row(signal, key, row["decision_id"], utc(now))])
        return {**row, "status": "resolved", "resolution": resolution, "resolved_by": by}


# ---------------------------------------------------------------- the demo's compressed run


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
            counts = await dispatcher.dispatch()
            result.started = counts["started"]
            # Some customers redeem their offer a day after it was decided: their events go
            # through the pipeline like any other, which signals the journeys waiting for them.
            with store.reader() as conn:
                waiting = acts.journeys(conn, limit=1_000_000)
                decided = dict(
                    conn.execute(select(t.decisions.c.decision_id, t.decisions.c.decided_at)).all()
                )
            chosen: dict[str, dict[str, Any]] = {}
            for j in waiting:
                if (
                    j["status"] in acts.OPEN_JOURNEY
                    and "channel.redeemed" in j["listens"]
                    and _responds(j["decision_id"], respond_share)
                ):
                    chosen.setdefault(j["customer_id"], j)
            responses = [
                make_event(
                    "channel.redeemed",
                    event_id=f"demo-redeem-{j['decision_id']}",
                    customer_id=customer,
                    occurred_at=(decided[j["decision_id"]] + dt.timedelta(days=1)).isoformat(),
                    payload={"channel": j["channel"]},
                )
                for customer, j in sorted(chosen.items())
            ]
            if responses:
                engine.pipeline(policy).run(iter(responses), "demo responses")
                await dispatcher.dispatch()
                result.responded = len(responses)
            await env.sleep(dt.timedelta(days=days))
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                with store.reader() as conn:
                    open_ = conn.execute(
                        select(t.journeys.c.decision_id).where(
                            t.journeys.c.status.in_(acts.OPEN_JOURNEY)
                        )
                    ).first()
                if open_ is None:
                    break
                await env.sleep(dt.timedelta(days=1))
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

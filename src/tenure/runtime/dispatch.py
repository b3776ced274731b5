"""The outbox dispatcher: hands outbox rows to Temporal, and is safe to run twice.

`journey.start` starts the journey workflow with id = decision id (a second start of the same
id is refused by Temporal and counted as already started); `journey.signal` signals a running
journey (a journey that has ended no longer listens, which is fine); `human.task` opens a task
in the queue (the task id is the row's key, so a second insert is a no-op). Rows are marked
dispatched only after Temporal accepted them, so a crash in between dispatches them again, which
each of the three tolerates.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
from collections import Counter
from typing import Any, assert_never

from temporalio.client import Client
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from tenure.config import DEFAULT_HEARTBEAT_S
from tenure.journeys.inputs import HumanTask, JourneySignal, JourneyStart, read_outbox
from tenure.journeys.workflow import WORKFLOW
from tenure.observe import tracing
from tenure.observe.logs import bound, get_logger
from tenure.observe.metrics import DISPATCHED
from tenure.runtime.clock import WallClock
from tenure.runtime.temporal import TASK_QUEUE
from tenure.store import acts
from tenure.store.acts import utc
from tenure.store.db import Store
from tenure.times import Clock, epoch, parse_instant

_CONCURRENCY = 64
# A start this long after its decision's instant is a journey that starts live (see `_start`):
# more than any dispatch delay of a live worker, less than a replayed history's age.
LIVE_AFTER = dt.timedelta(hours=1)
RETRY_LATER = "not yet"
log = get_logger("tenure.dispatch")


class Dispatcher:
    """Moves outbox rows into Temporal in pages, a bounded number in flight at once."""

    def __init__(
        self,
        store: Store,
        client: Client,
        task_queue: str = TASK_QUEUE,
        clock: Clock | None = None,
        activity_heartbeat_s: float = DEFAULT_HEARTBEAT_S,
    ) -> None:
        self.store = store
        # Traced: the start carries the decision's trace into the workflow and its activities.
        self.client = tracing.with_tracing(client)
        self.task_queue = task_queue
        self.clock: Clock = clock or WallClock()
        self.activity_heartbeat_s = activity_heartbeat_s

    def _now(self) -> float:
        """The clock's time in epoch seconds (this edge counts leases and windows in numbers)."""
        return epoch(self.clock.now())

    async def dispatch(self, page: int = 500) -> Counter[str]:
        """Dispatch everything pending now; counts by what happened.

        Starts go before signals, so a signal in the same page finds its journey. A row that
        fails (Temporal unreachable, a signal for a journey not started yet) stays pending and
        is tried again on the next call; one bad row never holds up the others.
        """
        counts: Counter[str] = Counter()
        gate = asyncio.Semaphore(_CONCURRENCY)
        while True:
            with self.store.reader() as conn:
                rows = acts.pending_outbox(conn, page)
            if not rows:
                return counts
            starts = [r for r in rows if r["kind"] == "journey.start"]
            rest = [r for r in rows if r["kind"] != "journey.start"]
            results = [
                *await asyncio.gather(
                    *(self._gated(gate, r) for r in starts), return_exceptions=True
                ),
                *await asyncio.gather(
                    *(self._gated(gate, r) for r in rest), return_exceptions=True
                ),
            ]
            done, again = [], []
            for row, result in zip([*starts, *rest], results, strict=True):
                DISPATCHED.labels(
                    row["kind"], "failed" if isinstance(result, BaseException) else result
                ).inc()
                if isinstance(result, BaseException):
                    counts["failed"] += 1
                    again.append(row["id"])
                    log.warning(
                        "dispatch failed",
                        correlation_id=row["payload"].get("correlation_id"),
                        decision_id=row["decision_id"],
                        kind=row["kind"],
                        attempts=row.get("attempts"),
                        error=f"{type(result).__name__}: {result}",
                    )
                elif result == RETRY_LATER:
                    counts[result] += 1
                    again.append(row["id"])
                else:
                    counts[result] += 1
                    done.append(row["id"])
            with self.store.transaction() as conn:
                acts.mark_dispatched(conn, done, utc(self._now()))
                acts.note_attempt(conn, again)
            if len(rows) < page or not done:
                return counts

    async def _gated(self, gate: asyncio.Semaphore, row: dict[str, Any]) -> str:
        async with gate:
            payload = row["payload"]
            # Each row runs in a task of its own, so the ids bound here stay with this row; the
            # span continues the trace the decision started (see tenure.observe.tracing).
            with (
                bound(correlation_id=payload.get("correlation_id"), decision_id=row["decision_id"]),
                tracing.tracer.start_as_current_span(
                    f"tenure.dispatch {row['kind']}",
                    context=tracing.continued(payload.get("trace")),
                    attributes={
                        "tenure.decision_id": row["decision_id"],
                        "tenure.correlation_id": payload.get("correlation_id") or "",
                    },
                ),
            ):
                result = await self._one(row)
                what = {
                    "started": "journey started",
                    "already started": "journey already started",
                    "signalled": "journey signalled",
                    "journey over": "journey over, signal dropped",
                    "task opened": "task opened",
                }.get(result)
                if what is not None:
                    log.info(what, kind=row["kind"], customer_id=payload.get("customer_id"))
                return result

    async def _one(self, row: dict[str, Any]) -> str:
        # A kind this version does not know (written by a newer one, or a bug) raises here: the
        # row stays pending and is reported on every pass, never marked dispatched unseen.
        message = read_outbox(row["kind"], row["payload"])
        match message:
            case JourneyStart():
                return await self._start(message)
            case JourneySignal():
                return await self._signal(row["decision_id"], message)
            case HumanTask():
                return self._open_task(row["idempotency_key"], message)
            case _:
                assert_never(message)

    async def _start(self, start: JourneyStart) -> str:
        # A journey decided well before it starts (a replayed history, a backlog) runs in wall
        # time from now: its window moves with it, so live events reach it (see acts.start_live).
        decided = parse_instant(start.decided_at)
        now = utc(self._now())
        if now - decided > LIVE_AFTER:
            with self.store.transaction() as conn:
                acts.start_live(conn, start.decision_id, decided, now, start.journey_horizon_s)
        try:
            await self.client.start_workflow(
                WORKFLOW,
                dataclasses.replace(start, activity_heartbeat_s=self.activity_heartbeat_s),
                id=start.decision_id,
                task_queue=self.task_queue,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            )
        except WorkflowAlreadyStartedError:
            return "already started"
        return "started"

    async def _signal(self, decision_id: str, signal: JourneySignal) -> str:
        handle = self.client.get_workflow_handle(decision_id)
        try:
            await handle.signal("observe", signal.observation)
        except RPCError as exc:
            if exc.status != RPCStatusCode.NOT_FOUND:
                raise
            with self.store.reader() as conn:
                journey = acts.journey(conn, decision_id)
            # Not started yet: keep the signal for later. Over: nothing listens any more.
            pending = journey is not None and journey["status"] == "pending"
            return RETRY_LATER if pending else "journey over"
        return "signalled"

    def _open_task(self, task_id: str, task: HumanTask) -> str:
        with self.store.transaction() as conn:
            acts.insert_task(
                conn,
                {
                    "task_id": task_id,
                    "decision_id": task.decision_id,
                    "customer_id": task.customer_id,
                    "queue": task.queue or "retention",
                    "reason": task.reason or "",
                    "status": "open",
                    "created_at": utc(self._now()),
                },
            )
        return "task opened"

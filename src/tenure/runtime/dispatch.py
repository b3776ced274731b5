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
import datetime as dt
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from tenure.journeys.workflow import WORKFLOW
from tenure.runtime.temporal import TASK_QUEUE
from tenure.store import acts
from tenure.store.db import Store

_CONCURRENCY = 64


def _utc(epoch: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(epoch, dt.UTC)


class Dispatcher:
    """Moves outbox rows into Temporal in pages, a bounded number in flight at once."""

    def __init__(
        self,
        store: Store,
        client: Client,
        task_queue: str = TASK_QUEUE,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.client = client
        self.task_queue = task_queue
        self.now = now

    async def dispatch(self, page: int = 500) -> Counter[str]:
        """Dispatch everything pending now; counts by what happened."""
        counts: Counter[str] = Counter()
        gate = asyncio.Semaphore(_CONCURRENCY)
        while True:
            with self.store.reader() as conn:
                rows = acts.pending_outbox(conn, page)
            if not rows:
                return counts
            self._record_journeys([r for r in rows if r["kind"] == "journey.start"])
            results = await asyncio.gather(*(self._gated(gate, r) for r in rows))
            counts.update(results)
            with self.store.transaction() as conn:
                acts.mark_dispatched(conn, [r["id"] for r in rows], _utc(self.now()))
            if len(rows) < page:
                return counts

    def _record_journeys(self, rows: list[dict[str, Any]]) -> None:
        at = _utc(self.now())
        with self.store.transaction() as conn:
            acts.insert_journeys(
                conn,
                [
                    {
                        "decision_id": r["decision_id"],
                        "customer_id": r["payload"]["customer_id"],
                        "journey_id": r["payload"]["journey"]["id"],
                        "journey_hash": r["payload"]["journey_hash"],
                        "action_id": r["payload"]["action_id"],
                        "channel": r["payload"]["channel"],
                        "status": "pending",
                        "listens": r["payload"]["listens"],
                        "sends": [],
                        "started_at": at,
                        "updated_at": at,
                    }
                    for r in rows
                ],
            )

    async def _gated(self, gate: asyncio.Semaphore, row: dict[str, Any]) -> str:
        async with gate:
            return await self._one(row)

    async def _one(self, row: dict[str, Any]) -> str:
        kind, payload = row["kind"], row["payload"]
        if kind == "journey.start":
            try:
                await self.client.start_workflow(
                    WORKFLOW,
                    payload,
                    id=row["decision_id"],
                    task_queue=self.task_queue,
                    id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                )
            except WorkflowAlreadyStartedError:
                return "already started"
            return "started"
        if kind == "journey.signal":
            handle = self.client.get_workflow_handle(row["decision_id"])
            try:
                await handle.signal("observe", payload["observation"])
            except RPCError as exc:
                if exc.status == RPCStatusCode.NOT_FOUND:
                    return "journey over"
                raise
            return "signalled"
        if kind == "human.task":
            with self.store.transaction() as conn:
                acts.insert_task(
                    conn,
                    {
                        "task_id": row["idempotency_key"],
                        "decision_id": row["decision_id"],
                        "customer_id": payload["customer_id"],
                        "queue": payload.get("queue") or "retention",
                        "reason": payload.get("reason") or "",
                        "status": "open",
                        "created_at": _utc(self.now()),
                    },
                )
            return "task opened"
        return f"unknown kind {kind}"


async def journey_status(client: Client, decision_id: str) -> WorkflowExecutionStatus | None:
    """Temporal's status of a journey, None when Temporal does not know it."""
    try:
        desc = await client.get_workflow_handle(decision_id).describe()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return None
        raise
    return desc.status

"""Resolving a human task: close it and signal the journey waiting for it, in one transaction."""

from __future__ import annotations

from typing import Any

from tenure.errors import InputError
from tenure.journeys.inputs import JourneySignal, TaskResolved
from tenure.store import acts, repo
from tenure.store.acts import outbox_row, utc
from tenure.store.db import Store


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

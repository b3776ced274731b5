"""Operator routes: journeys and the human task queue.

(No `from __future__ import annotations` here: FastAPI reads the dependency annotations.)
"""

import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query
from pydantic import BaseModel, Field

from tenure.api.auth import Caller
from tenure.api.service import Service
from tenure.runtime.journeys import resolve_task
from tenure.runtime.temporal import workflow_url
from tenure.store import acts


class Resolution(BaseModel):
    """How a person closed a task."""

    resolution: str = Field(
        min_length=1, max_length=100, description="What happened, e.g. saved or lost."
    )


def router(svc: Service) -> APIRouter:
    """The journey and task routes of one service."""
    api = APIRouter(prefix="/v1")
    watchers = svc.guard("operator", "auditor")

    @api.get("/journeys", tags=["journeys"])
    def list_journeys(
        who: Annotated[Caller, Depends(watchers)],
        status: Literal["pending", "running", "completed", "failed"] | None = None,
        customer_id: str | None = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    ) -> list[dict[str, Any]]:
        """Journeys, newest first, with their current step and outcome."""
        with svc.store.reader() as conn:
            rows = acts.journeys(conn, status, customer_id, limit)
        return [{k: v for k, v in r.items() if k != "state"} for r in rows]

    @api.get("/journeys/{decision_id}", tags=["journeys"])
    def get_journey(decision_id: str, who: Annotated[Caller, Depends(watchers)]) -> dict[str, Any]:
        """One journey: its step, what it waits for, its history and its Temporal UI page."""
        with svc.store.reader() as conn:
            row = acts.journey(conn, decision_id)
        if row is None:
            raise HTTPException(404, f"no journey {decision_id!r}")
        return {**row, "temporal_ui": workflow_url(decision_id)}

    @api.get("/tasks", tags=["tasks"])
    def list_tasks(
        who: Annotated[Caller, Depends(svc.guard("operator"))],
        status: Literal["open", "resolved", "expired", "all"] = "open",
        queue: str | None = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> list[dict[str, Any]]:
        """Tasks waiting for a person, oldest first."""
        with svc.store.reader() as conn:
            return acts.tasks(conn, None if status == "all" else status, queue, limit)

    @api.post("/tasks/{task_id}/resolve", tags=["tasks"])
    def resolve(
        task_id: str,
        body: Resolution,
        who: Annotated[Caller, Depends(svc.guard("operator"))],
    ) -> dict[str, Any]:
        """Resolve a task as the caller; the journey waiting on it continues."""
        with svc.store.reader() as conn:
            if acts.task(conn, task_id) is None:
                raise HTTPException(404, f"no task {task_id!r}")
        return resolve_task(svc.store, task_id, body.resolution, who.name, time.time())

    return api

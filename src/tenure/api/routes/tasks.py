"""The human task queue: list tasks, and resolve one so the journey waiting on it continues.

(No `from __future__ import annotations` here: FastAPI reads the dependency annotations.)
"""

import datetime as dt
import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException
from pydantic import BaseModel, Field

from tenure.api.auth import Caller
from tenure.api.paging import Keyset, Page, paged
from tenure.api.service import Service
from tenure.services.tasks import resolve_task
from tenure.store import acts, service_reads

TASKS = Keyset("tasks", (dt.datetime, str))


class Resolution(BaseModel):
    """How a person closed a task."""

    resolution: str = Field(
        min_length=1, max_length=100, description="What happened, e.g. saved or lost."
    )


def router(svc: Service) -> APIRouter:
    """The task routes of one service."""
    api = APIRouter(prefix="/v1/tasks", tags=["tasks"])
    operators = svc.guard("operator")

    @api.get("")
    def list_tasks(
        who: Annotated[Caller, Depends(operators)],
        page: Annotated[Page, Depends(paged(TASKS))],
        status: Literal["open", "resolved", "expired", "all"] = "open",
        queue: str | None = None,
    ) -> list[dict[str, Any]]:
        """Tasks waiting for a person, oldest first."""
        wanted = None if status == "all" else status
        with svc.store.reader() as conn:
            rows = service_reads.tasks_page(conn, page.ask, page.after, wanted, queue)
        return page.answer(rows, lambda r: (r["created_at"], r["task_id"]))

    @api.post("/{task_id}/resolve")
    def resolve(
        task_id: str,
        body: Resolution,
        who: Annotated[Caller, Depends(operators)],
    ) -> dict[str, Any]:
        """Resolve a task as the caller; the journey waiting on it continues."""
        with svc.store.reader() as conn:
            if acts.task(conn, task_id) is None:
                raise HTTPException(404, f"no task {task_id!r}")
        return resolve_task(svc.store, task_id, body.resolution, who.name, time.time())

    return api

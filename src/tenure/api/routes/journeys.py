"""Journey routes: what each journey is doing, and where to watch it in Temporal's UI.

(No `from __future__ import annotations` here: FastAPI reads the dependency annotations.)
"""

import datetime as dt
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException

from tenure.api.auth import Caller
from tenure.api.paging import Keyset, Page, paged
from tenure.api.service import Service
from tenure.runtime.temporal import workflow_url
from tenure.store import acts, service_reads

JOURNEYS = Keyset("journeys", (dt.datetime, str))


def router(svc: Service) -> APIRouter:
    """The journey routes of one service."""
    api = APIRouter(prefix="/v1/journeys", tags=["journeys"])
    watchers = svc.guard("operator", "auditor")

    @api.get("")
    def list_journeys(
        who: Annotated[Caller, Depends(watchers)],
        page: Annotated[Page, Depends(paged(JOURNEYS))],
        status: Literal["pending", "running", "completed", "failed"] | None = None,
        customer_id: str | None = None,
    ) -> list[dict[str, Any]]:
        """Journeys, newest first, with their current step and outcome."""
        with svc.store.reader() as conn:
            rows = service_reads.journeys_page(conn, page.ask, page.after, status, customer_id)
        shown = page.answer(rows, lambda r: (r["started_at"], r["decision_id"]))
        return [{k: v for k, v in r.items() if k != "state"} for r in shown]

    @api.get("/{decision_id}")
    def get_journey(decision_id: str, who: Annotated[Caller, Depends(watchers)]) -> dict[str, Any]:
        """One journey: its step, what it waits for, its history and its Temporal UI page."""
        with svc.store.reader() as conn:
            row = acts.journey(conn, decision_id)
        if row is None:
            raise HTTPException(404, f"no journey {decision_id!r}")
        return {**row, "temporal_ui": workflow_url(decision_id)}

    return api

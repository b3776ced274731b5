"""Decision routes: decisions newest first, a page at a time, and one with its candidates,
verdicts and lineage.

(No `from __future__ import annotations` here: FastAPI reads the dependency annotations.)
"""

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query

from tenure.api.auth import Caller
from tenure.api.paging import Keyset, Page, paged
from tenure.api.service import Service
from tenure.store import queries, service_reads

DECISIONS = Keyset("decisions", (dt.datetime, str))


def router(svc: Service) -> APIRouter:
    """The decision routes of one service."""
    api = APIRouter(prefix="/v1/decisions", tags=["decisions"])
    readers = svc.guard("operator", "auditor")

    @api.get("")
    def list_decisions(
        who: Annotated[Caller, Depends(readers)],
        page: Annotated[Page, Depends(paged(DECISIONS))],
        customer_id: str | None = None,
        status: Annotated[str | None, Query(pattern="^(action|none|suppressed|human)$")] = None,
    ) -> list[dict[str, Any]]:
        """Decisions, newest first (optionally one customer's, or one status); the `Link`
        header's next page goes on after the last one."""
        with svc.store.reader() as conn:
            rows = service_reads.decisions_page(conn, page.ask, page.after, customer_id, status)
        return page.answer(rows, lambda r: (r["decided_at"], r["decision_id"]))

    @api.get("/{decision_id}")
    def get_decision(decision_id: str, who: Annotated[Caller, Depends(readers)]) -> dict[str, Any]:
        """A decision with its candidates, guardrail verdicts and lineage."""
        with svc.store.reader() as conn:
            found = queries.decision_record(conn, decision_id)
        if found is None:
            raise HTTPException(404, f"no decision {decision_id!r}")
        return found

    return api

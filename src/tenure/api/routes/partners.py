"""Partner routes: statement reconciliation, settlement, and adjustments with four eyes (the
proposer's token holder cannot approve).

(No `from __future__ import annotations` here: FastAPI reads the dependency annotations.)
"""

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query
from pydantic import BaseModel, Field

from tenure.api.auth import Caller, scope
from tenure.api.paging import Keyset, Page, paged
from tenure.api.routes.loyalty import Id
from tenure.api.service import Service
from tenure.services import loyalty
from tenure.store import service_reads

PERIOD = r"^(19|2[0-9])[0-9]{2}-(0[1-9]|1[0-2])$"  # YYYY-MM, years 1900-2999
SETTLEMENT = Keyset("settlement", (str, str))
Period = Annotated[str, Query(pattern=PERIOD)]
Statement = Annotated[
    str, Body(media_type="text/csv", description="CSV with columns reference, points.")
]
ADJUSTMENTS = Keyset("adjustments", (dt.datetime, str))


class Adjustment(BaseModel):
    """A disputed statement line: points the partner funds more (negative: less)."""

    period: str = Field(pattern=PERIOD)
    reference: Id
    points: int = Field(ge=-1_000_000_000, le=1_000_000_000)
    reason: str = Field(min_length=1, max_length=500)


def router(svc: Service) -> APIRouter:
    """The partner routes of one service."""
    api = APIRouter(prefix="/v1/partners", tags=["partners"])
    readers = svc.guard("operator", "auditor", "partner")

    @api.post("/{partner}/reconciliation")
    def reconcile(
        partner: str,
        who: Annotated[Caller, Depends(readers)],
        period: Period,
        statement: Statement,
    ) -> dict[str, Any]:
        """Compare a partner's statement with the points the ledger says it funded."""
        service_reads.require_partner(scope(who, svc.contracts), partner)
        with svc.store.reader() as conn:
            return loyalty.reconciliation(conn, partner, period, statement, "statement")

    @api.get("/{partner}/settlement")
    def settlement(
        partner: str,
        who: Annotated[Caller, Depends(readers)],
        page: Annotated[Page, Depends(paged(SETTLEMENT))],
        period: Period,
    ) -> list[dict[str, Any]]:
        """Per contract and funder, what the period settles (a partner: only what it funds)."""
        seen_by = scope(who, svc.contracts)
        with svc.store.reader() as conn:
            rows = service_reads.settlement(conn, svc.contracts, period, seen_by, partner)
        return page.of(rows, lambda r: (r["contract"], r["funder"]))

    @api.get("/adjustments")
    def list_adjustments(
        who: Annotated[Caller, Depends(svc.guard("operator", "auditor", "approver"))],
        page: Annotated[Page, Depends(paged(ADJUSTMENTS))],
        partner: str | None = None,
    ) -> list[dict[str, Any]]:
        """Adjustments, proposed and approved, newest first."""
        seen_by = scope(who, svc.contracts)
        with svc.store.reader() as conn:
            rows = service_reads.adjustments_page(conn, seen_by, page.ask, page.after, partner)
        return page.answer(rows, lambda r: (r["created_at"], r["adjustment_id"]))

    @api.post("/{partner}/adjustments", status_code=201)
    def propose(
        partner: str, body: Adjustment, who: Annotated[Caller, Depends(svc.guard("operator"))]
    ) -> dict[str, Any]:
        """Propose an adjustment for a disputed line; it posts when someone else approves."""
        adjustment_id = loyalty.propose_adjustment(
            svc.store,
            svc.contracts,
            partner,
            body.period,
            body.reference,
            body.points,
            body.reason,
            who.name,
            dt.datetime.now(dt.UTC),
        )
        return {"adjustment_id": adjustment_id, "status": "proposed", "author": who.name}

    @api.post("/adjustments/{adjustment_id}/approve")
    def approve(
        adjustment_id: str, who: Annotated[Caller, Depends(svc.guard("approver"))]
    ) -> dict[str, Any]:
        """Approve an adjustment (not its author) and post it to the ledger, exactly once."""
        return loyalty.approve_adjustment(
            svc.store, adjustment_id, who.name, dt.datetime.now(dt.UTC)
        )

    return api

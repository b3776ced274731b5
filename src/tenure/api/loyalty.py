"""Loyalty and partner routes: balances, history, redemptions, statements, settlement,
adjustments.

A redemption over the API is a `loyalty.redeem` event like any other (its event id derives from
the redemption id, so a resend is a duplicate and posts nothing twice); the answer is the
ledger's result for it. Adjustments keep their four-eyes rule: the proposer's token holder
cannot approve.

(No `from __future__ import annotations` here: FastAPI reads the dependency annotations.)
"""

import datetime as dt
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, HTTPException, Query
from pydantic import BaseModel, Field
from sqlalchemy import select

from tenure.api.auth import Caller
from tenure.api.service import Service
from tenure.loyalty.ledger import member_account
from tenure.runtime import loyalty
from tenure.store import ledger, queries
from tenure.store import schema as t

PERIOD = r"^(19|2[0-9])[0-9]{2}-(0[1-9]|1[0-2])$"  # YYYY-MM, years 1900-2999
Id = Annotated[str, Field(min_length=1, max_length=200)]


class Redemption(BaseModel):
    """A member redeems points (held until confirmed or cancelled)."""

    customer_id: Id
    redemption_id: Id = Field(description="The caller's id for it; a resend changes nothing.")
    points: int = Field(gt=0, le=1_000_000_000)
    programme: Id = "default"
    item: Id | None = None
    partner_id: Id | None = None


class RedemptionStep(BaseModel):
    """Confirm or cancel a held redemption."""

    customer_id: Id
    programme: Id = "default"


class Adjustment(BaseModel):
    """A disputed statement line: points the partner funds more (negative: less)."""

    period: str = Field(pattern=PERIOD)
    reference: Id
    points: int = Field(ge=-1_000_000_000, le=1_000_000_000)
    reason: str = Field(min_length=1, max_length=500)


def router(svc: Service) -> APIRouter:
    """The loyalty and partner routes of one service."""
    api = APIRouter(prefix="/v1")
    members = svc.guard("operator", "auditor", "partner")

    def own_partner(who: Caller, partner: str) -> None:
        if who.role == "partner" and who.partner != partner:
            raise HTTPException(403, f"a token of {who.partner} cannot act for {partner}")

    @api.get("/loyalty/{programme}/members/{customer_id}", tags=["loyalty"])
    def balance(
        programme: str, customer_id: str, who: Annotated[Caller, Depends(members)]
    ) -> dict[str, Any]:
        """A member's points (posted, held, available), lots and tier."""
        svc.require_own_customer(who, customer_id, ["loyalty"])
        with svc.store.reader() as conn:
            data = loyalty.member_balance(conn, programme, customer_id)
            data["tier"] = queries.tier(conn, programme, customer_id)
        return data

    @api.get("/loyalty/{programme}/members/{customer_id}/history", tags=["loyalty"])
    def history(
        programme: str,
        customer_id: str,
        who: Annotated[Caller, Depends(members)],
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> list[dict[str, Any]]:
        """A member's transfers, newest first."""
        svc.require_own_customer(who, customer_id, ["loyalty"])
        with svc.store.reader() as conn:
            return ledger.history(conn, member_account(programme, customer_id), limit)

    def _loyalty_event(
        kind: str, redemption_id: str, customer_id: str, payload: dict[str, Any], partner: Any
    ) -> dict[str, Any]:
        event_id = f"api:{kind}:{redemption_id}"
        event = {
            "event_id": event_id,
            "type": kind,
            "customer_id": customer_id,
            "occurred_at": dt.datetime.now(dt.UTC).isoformat(),
            "source": "api",
            "payload": {"redemption_id": redemption_id, **payload},
        }
        if partner:
            event["partner_id"] = partner
        outcome = svc.ingest([event])["results"][0]
        if outcome["status"] == "rejected":
            raise HTTPException(422, f"{outcome['field']}: {outcome['reason']}")
        r = t.loyalty_results.c
        with svc.store.reader() as conn:
            row = conn.execute(
                select(r.result, r.points, r.detail).where(r.event_id == event_id)
            ).first()
        return {
            "redemption_id": redemption_id,
            "event_id": event_id,
            "event": outcome["status"],
            "result": row.result if row else "no contract covers it",
            "points": row.points if row else 0,
            "detail": row.detail if row else None,
        }

    @api.post("/loyalty/redemptions", tags=["loyalty"])
    def redeem(
        body: Redemption, who: Annotated[Caller, Depends(svc.guard("ingest", "operator"))]
    ) -> dict[str, Any]:
        """Hold points for a redemption; `result` is the ledger's answer (ok, or why not)."""
        payload: dict[str, Any] = {"points": body.points, "programme": body.programme}
        if body.item:
            payload["item"] = body.item
        return _loyalty_event(
            "loyalty.redeem", body.redemption_id, body.customer_id, payload, body.partner_id
        )

    @api.post("/loyalty/redemptions/{redemption_id}/{step}", tags=["loyalty"])
    def redemption_step(
        redemption_id: str,
        step: Literal["confirm", "cancel"],
        body: RedemptionStep,
        who: Annotated[Caller, Depends(svc.guard("ingest", "operator"))],
    ) -> dict[str, Any]:
        """Confirm (post) or cancel (void) a held redemption, exactly once."""
        kind = "loyalty.redeem_confirmed" if step == "confirm" else "loyalty.redeem_cancelled"
        return _loyalty_event(
            kind, redemption_id, body.customer_id, {"programme": body.programme}, None
        )

    @api.post("/partners/{partner}/reconciliation", tags=["partners"])
    def reconcile(
        partner: str,
        who: Annotated[Caller, Depends(svc.guard("operator", "auditor", "partner"))],
        period: Annotated[str, Query(pattern=PERIOD)],
        statement: Annotated[
            str, Body(media_type="text/csv", description="CSV with columns reference, points.")
        ],
    ) -> dict[str, Any]:
        """Compare a partner's statement with the points the ledger says it funded."""
        own_partner(who, partner)
        with svc.store.reader() as conn:
            return loyalty.reconciliation(conn, partner, period, statement, "statement")

    @api.get("/partners/{partner}/settlement", tags=["partners"])
    def settlement(
        partner: str,
        who: Annotated[Caller, Depends(svc.guard("operator", "auditor", "partner"))],
        period: Annotated[str, Query(pattern=PERIOD)],
    ) -> list[dict[str, Any]]:
        """What the partner's contracts settle for the period, per funder."""
        own_partner(who, partner)
        covered = {c.id for c in svc.contracts if c.covers(partner)}
        with svc.store.reader() as conn:
            rows = loyalty.settlement(conn, svc.contracts, period)
        return [r for r in rows if r["contract"] in covered or r["funder"] == partner]

    @api.get("/partners/adjustments", tags=["partners"])
    def list_adjustments(
        who: Annotated[Caller, Depends(svc.guard("operator", "auditor", "approver"))],
        partner: str | None = None,
    ) -> list[dict[str, Any]]:
        """Adjustments, proposed and approved, newest first."""
        with svc.store.reader() as conn:
            return loyalty.adjustments(conn, partner)

    @api.post("/partners/{partner}/adjustments", tags=["partners"], status_code=201)
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

    @api.post("/partners/adjustments/{adjustment_id}/approve", tags=["partners"])
    def approve(
        adjustment_id: str, who: Annotated[Caller, Depends(svc.guard("approver"))]
    ) -> dict[str, Any]:
        """Approve an adjustment (not its author) and post it to the ledger, exactly once."""
        return loyalty.approve_adjustment(
            svc.store, adjustment_id, who.name, dt.datetime.now(dt.UTC)
        )

    return api

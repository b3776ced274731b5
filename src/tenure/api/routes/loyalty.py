"""Loyalty routes: balances, history and redemptions.

A redemption over the API is a `loyalty.redeem` event like any other (its event id derives from
the redemption id, so a resend is a duplicate and posts nothing twice); the answer is the
ledger's result for it.

(No `from __future__ import annotations` here: FastAPI reads the dependency annotations.)
"""

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query
from pydantic import BaseModel, Field

from tenure.api.auth import Caller, scope
from tenure.api.service import Service
from tenure.loyalty.ledger import member_account
from tenure.services import loyalty
from tenure.store import queries, service_reads

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


def loyalty_event(
    svc: Service,
    kind: str,
    redemption_id: str,
    customer_id: str,
    payload: dict[str, Any],
    partner: str | None,
) -> dict[str, Any]:
    """Ingest one redemption event and answer with what the ledger made of it."""
    event_id = f"api:{kind}:{redemption_id}"
    event = {
        "event_id": event_id,
        "type": kind,
        "customer_id": customer_id,
        "occurred_at": svc.clock.now().isoformat(),
        "source": "api",
        "payload": {"redemption_id": redemption_id, **payload},
    }
    if partner:
        event["partner_id"] = partner
    outcome = svc.ingest([event])["results"][0]
    if outcome["status"] == "rejected":
        raise HTTPException(422, f"{outcome['field']}: {outcome['reason']}")
    with svc.store.reader() as conn:
        found = service_reads.loyalty_result(conn, event_id)
    result, points, detail = found or ("no contract covers it", 0, None)
    return {
        "redemption_id": redemption_id,
        "event_id": event_id,
        "event": outcome["status"],
        "result": result,
        "points": points,
        "detail": detail,
    }


def router(svc: Service) -> APIRouter:
    """The loyalty routes of one service."""
    api = APIRouter(prefix="/v1/loyalty", tags=["loyalty"])
    members = svc.guard("operator", "auditor", "partner")
    writers = svc.guard("ingest", "operator")

    @api.get("/{programme}/members/{customer_id}")
    def balance(
        programme: str, customer_id: str, who: Annotated[Caller, Depends(members)]
    ) -> dict[str, Any]:
        """A member's points (posted, held, available), lots and tier; a partner's token sees
        only the lots of its own funding."""
        seen_by = scope(who, svc.contracts)
        with svc.store.reader() as conn:
            service_reads.require_customer(conn, seen_by, customer_id, ["loyalty"])
            data = loyalty.member_balance(conn, programme, customer_id)
            data["lots"] = service_reads.member_lots(
                conn, seen_by, data["account"], customer_id, data["lots"]
            )
            data["tier"] = queries.tier(conn, programme, customer_id)
        return data

    @api.get("/{programme}/members/{customer_id}/history")
    def history(
        programme: str,
        customer_id: str,
        who: Annotated[Caller, Depends(members)],
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> list[dict[str, Any]]:
        """A member's transfers, newest first; a partner's token sees only those of its own
        events and its own funding."""
        seen_by = scope(who, svc.contracts)
        account = member_account(programme, customer_id)
        with svc.store.reader() as conn:
            service_reads.require_customer(conn, seen_by, customer_id, ["loyalty"])
            return service_reads.member_history(conn, seen_by, account, customer_id, limit)

    @api.post("/redemptions")
    def redeem(body: Redemption, who: Annotated[Caller, Depends(writers)]) -> dict[str, Any]:
        """Hold points for a redemption; `result` is the ledger's answer (ok, or why not)."""
        payload: dict[str, Any] = {"points": body.points, "programme": body.programme}
        if body.item:
            payload["item"] = body.item
        return loyalty_event(
            svc, "loyalty.redeem", body.redemption_id, body.customer_id, payload, body.partner_id
        )

    @api.post("/redemptions/{redemption_id}/{step}")
    def redemption_step(
        redemption_id: str,
        step: Literal["confirm", "cancel"],
        body: RedemptionStep,
        who: Annotated[Caller, Depends(writers)],
    ) -> dict[str, Any]:
        """Confirm (post) or cancel (void) a held redemption, exactly once."""
        kind = "loyalty.redeem_confirmed" if step == "confirm" else "loyalty.redeem_cancelled"
        return loyalty_event(
            svc, kind, redemption_id, body.customer_id, {"programme": body.programme}, None
        )

    return api

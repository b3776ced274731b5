"""Loyalty routes: balances, history and redemptions.

A redemption over the API is a `loyalty.redeem` event like any other (its event id derives from
the redemption id, so a resend is a duplicate and posts nothing twice); the answer is the
ledger's result for it: a 200 when it holds (or posts, or voids), else a 409 problem whose
`type` and `rule` name the rule that refused it (`exceeds_available`,
`pending_transfer_not_found`, `catalogue_price`, `no_contract`...).

(No `from __future__ import annotations` here: FastAPI reads the dependency annotations.)
"""

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from tenure.api.auth import Caller, scope
from tenure.api.contract import problems
from tenure.api.paging import Keyset, Page, paged
from tenure.api.service import Service, problem
from tenure.loyalty.ledger import member_account
from tenure.services import grants, loyalty
from tenure.store import queries, service_reads

Id = Annotated[str, Field(min_length=1, max_length=200)]
HISTORY = Keyset("member-history", (float, str))
PROPOSALS = Keyset("proposals", (str, str))
HELD = ("ok", "exists")  # what the ledger answers when it did what was asked


class Redemption(BaseModel):
    """A member redeems points (held until confirmed or cancelled)."""

    customer_id: Id
    redemption_id: Id = Field(description="The caller's id for it; a resend changes nothing.")
    points: int = Field(gt=0, le=1_000_000_000)
    programme: Id = "default"
    item: Id | None = None
    partner_id: Id | None = None

    def payload(self) -> dict[str, Any]:
        """The `loyalty.redeem` event's payload (but for the redemption id)."""
        item = {"item": self.item} if self.item else {}
        return {"points": self.points, "programme": self.programme, **item}


class Manual(BaseModel):
    """A goodwill grant (points > 0) or an adjustment (either sign) of a member's points."""

    points: int = Field(ge=-1_000_000_000, le=1_000_000_000)
    reason: str = Field(min_length=1, max_length=500, description="Why; kept in the audit.")
    key: Id | None = Field(default=None, description="The caller's id for it: a resend is one.")


class Rejection(BaseModel):
    """Why a waiting grant or adjustment is turned down."""

    reason: str = Field(min_length=1, max_length=500)


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
    result, points, detail = found or ("no_contract", 0, "no contract covers it")
    return {
        "redemption_id": redemption_id,
        "event_id": event_id,
        "event": outcome["status"],
        "result": result,
        "points": points,
        "detail": detail,
    }


def answered(outcome: dict[str, Any]) -> dict[str, Any] | JSONResponse:
    """The ledger's answer: as it is when it held, posted or voided; else a 409 problem naming
    the rule that refused (a resend of a refused redemption is refused the same way)."""
    result = outcome["result"]
    if result in HELD:
        return outcome
    # `refused` is what the loyalty service records for an item off the catalogue's price.
    rule = "catalogue_price" if result == "refused" else result
    why = f": {outcome['detail']}" if outcome["detail"] else ""
    return problem(
        409,
        f"Refused by {rule}",
        f"redemption {outcome['redemption_id']!r} refused by {rule}{why}",
        type=f"urn:tenure:rule:{rule}",
        rule=rule,
        **{k: outcome[k] for k in ("redemption_id", "event_id", "event")},
    )


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
        page: Annotated[Page, Depends(paged(HISTORY))],
    ) -> list[dict[str, Any]]:
        """A member's transfers, newest first; a partner's token sees only those of its own
        events and its own funding."""
        seen_by = scope(who, svc.contracts)
        account = member_account(programme, customer_id)
        with svc.store.reader() as conn:
            service_reads.require_customer(conn, seen_by, customer_id, ["loyalty"])
            rows = service_reads.member_history_page(
                conn, seen_by, account, customer_id, page.ask, page.after
            )
        return page.answer(rows, lambda r: (r["at"], r["transfer_id"]))

    @api.post("/redemptions", responses=problems(409), response_model=None)
    def redeem(
        body: Redemption, who: Annotated[Caller, Depends(writers)]
    ) -> dict[str, Any] | JSONResponse:
        """Hold points for a redemption (`result` ok; a resend: the same answer); a 409 problem
        naming the rule when the ledger refuses it (e.g. `exceeds_available`)."""
        kind, payload = "loyalty.redeem", body.payload()
        held = loyalty_event(
            svc, kind, body.redemption_id, body.customer_id, payload, body.partner_id
        )
        return answered(held)

    @api.post("/redemptions/{redemption_id}/{step}", responses=problems(409), response_model=None)
    def redemption_step(
        redemption_id: str,
        step: Literal["confirm", "cancel"],
        body: RedemptionStep,
        who: Annotated[Caller, Depends(writers)],
    ) -> dict[str, Any] | JSONResponse:
        """Confirm (post) or cancel (void) a held redemption, exactly once; a 409 problem naming
        the rule when there is none held (`pending_transfer_not_found`, `..._not_pending`)."""
        kind = "loyalty.redeem_confirmed" if step == "confirm" else "loyalty.redeem_cancelled"
        payload = {"programme": body.programme}
        return answered(loyalty_event(svc, kind, redemption_id, body.customer_id, payload, None))

    manual_routes(api, svc)
    return api


def _proposal_key(row: dict[str, Any]) -> tuple[str, str]:
    return (row["created_at"].isoformat(), row["proposal_id"])


def manual_routes(api: APIRouter, svc: Service) -> None:
    """Grants and adjustments (services/grants.py): posted at once up to the programme's
    four-eyes threshold, else waiting (202) for another person's approval; every step audited
    under the caller's token name. A refusal (the author approving, below zero) is a 422."""
    operators = svc.guard("operator")
    readers = svc.guard("operator", "auditor")

    def endpoint(kind: str) -> Any:
        def manual(
            programme: str,
            customer_id: str,
            body: Manual,
            who: Annotated[Caller, Depends(operators)],
        ) -> JSONResponse:
            done = grants.propose(
                svc.store, grants.Terms.of(svc.workspace), kind, programme, customer_id,
                body.points, body.reason, who.name, svc.clock.now(), body.key,
            )  # fmt: skip
            return JSONResponse(
                jsonable_encoder(done), status_code=201 if done["status"] == "posted" else 202
            )

        manual.__doc__ = (
            f"{'Grant' if kind == 'grant' else 'Adjust'} a member's points with a reason: 201 "
            "when posted, 202 when it waits for a second person (above the threshold)."
        )
        return manual

    for kind, path in (("grant", "grants"), ("adjust", "adjustments")):
        api.post(
            f"/{{programme}}/members/{{customer_id}}/{path}",
            status_code=201,
            responses={202: {"description": "Waiting for a second person's approval."}},
            response_model=None,
            operation_id=f"loyalty_{path}",
        )(endpoint(kind))

    @api.get("/proposals")
    def list_proposals(
        who: Annotated[Caller, Depends(readers)],
        page: Annotated[Page, Depends(paged(PROPOSALS))],
        status: Literal["proposed", "posted", "rejected", "all"] = "proposed",
        customer: str | None = None,
    ) -> list[dict[str, Any]]:
        """Grants and adjustments, oldest first (a queue): those waiting unless `status` says."""
        with svc.store.reader() as conn:
            rows = grants.proposals(conn, None if status == "all" else status, customer, 100_000)
        return page.of(sorted(rows, key=_proposal_key), _proposal_key)

    @api.post("/proposals/{proposal_id}/approve")
    def approve(proposal_id: str, who: Annotated[Caller, Depends(operators)]) -> dict[str, Any]:
        """Post a waiting grant or adjustment: never by its author (422)."""
        terms = grants.Terms.of(svc.workspace)
        return grants.approve(svc.store, terms, proposal_id, who.name, svc.clock.now())

    @api.post("/proposals/{proposal_id}/reject")
    def reject(
        proposal_id: str, body: Rejection, who: Annotated[Caller, Depends(operators)]
    ) -> dict[str, Any]:
        """Turn down a waiting grant or adjustment, with a reason."""
        return grants.reject(svc.store, proposal_id, who.name, body.reason, svc.clock.now())

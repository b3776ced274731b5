"""Customer routes: one customer's view (scoped and masked for the caller), and erasure of
their personal data.

(No `from __future__ import annotations` here: FastAPI reads the dependency annotations.)
"""

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query

from tenure.api.auth import Caller, scope
from tenure.api.paging import refuse_unknown
from tenure.api.personal import mask_view
from tenure.api.service import Service
from tenure.services.personal import erase
from tenure.services.views import customer_view
from tenure.store import service_reads

# The top-level fields of a customer's view (`services.views.customer_view`), for `?fields=`.
FIELDS = (
    "customer_id",
    "as_of",
    "personal",
    "features",
    "score",
    "memory",
    "events",
    "decisions",
    "journeys",
    "loyalty",
)


def asked_fields(fields: str | None) -> list[str]:
    """The fields `?fields=` names; a 400 naming those a customer's view does not have."""
    wanted = [f.strip() for f in fields.split(",") if f.strip()] if fields else []
    unknown = [f for f in wanted if f not in FIELDS]
    if unknown:
        names = ", ".join(repr(f) for f in unknown)
        raise HTTPException(400, f"fields: no field {names} (a customer has {', '.join(FIELDS)})")
    return wanted


def router(svc: Service) -> APIRouter:
    """The customer routes of one service."""
    api = APIRouter(prefix="/v1/customers", tags=["customers"])

    @api.get("/{customer_id}")
    def get_customer(
        customer_id: str,
        who: Annotated[Caller, Depends(svc.guard("operator", "auditor", "partner"))],
        _: Annotated[None, Depends(refuse_unknown)],
        fields: Annotated[
            str | None,
            Query(
                description=f"Comma-separated top-level fields to return (default: all): "
                f"{', '.join(FIELDS)}.",
                max_length=1000,
            ),
        ] = None,
    ) -> dict[str, Any]:
        """Features, risk with its explanation, value, decisions, journeys, loyalty balance and
        tier, and personal data (masked unless the role may see it). A partner sees only its own
        customers, and only the fields its contract shares; asking for another field is 403,
        for one a customer does not have (or another parameter) 400."""
        wanted = asked_fields(fields)
        seen_by = scope(who, svc.contracts)
        with svc.store.reader() as conn:
            service_reads.require_customer(conn, seen_by, customer_id, wanted)
            view = customer_view(conn, customer_id, scorer=svc.scorer, as_of=svc.clock.now())
        if view is None:
            raise HTTPException(404, f"no customer {customer_id!r}")
        view = seen_by.shown(mask_view(view, who.role))
        if wanted:
            view = {k: v for k, v in view.items() if k == "customer_id" or k in wanted}
        return view

    @api.delete("/{customer_id}/personal-data")
    def erase_customer(
        customer_id: str, who: Annotated[Caller, Depends(svc.guard())]
    ) -> dict[str, Any]:
        """Erase a customer's personal data (admin only); the audit chain and ledger still
        verify, and the erasure itself is an audit record."""
        return erase(svc.store, customer_id, who.name)

    return api

"""Customer routes: one customer's view (scoped and masked for the caller), and erasure of
their personal data.

(No `from __future__ import annotations` here: FastAPI reads the dependency annotations.)
"""

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query

from tenure.api.auth import Caller, scope
from tenure.api.personal import mask_view
from tenure.api.service import Service
from tenure.services.personal import erase
from tenure.services.views import customer_view
from tenure.store import service_reads


def router(svc: Service) -> APIRouter:
    """The customer routes of one service."""
    api = APIRouter(prefix="/v1/customers", tags=["customers"])

    @api.get("/{customer_id}")
    def get_customer(
        customer_id: str,
        who: Annotated[Caller, Depends(svc.guard("operator", "auditor", "partner"))],
        fields: Annotated[
            str | None,
            Query(description="Comma-separated top-level fields to return (default: all)."),
        ] = None,
    ) -> dict[str, Any]:
        """Features, risk with its explanation, value, decisions, journeys, loyalty balance and
        tier, and personal data (masked unless the role may see it). A partner sees only its own
        customers, and only the fields its contract shares; asking for another field is 403."""
        wanted = [f.strip() for f in fields.split(",") if f.strip()] if fields else []
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

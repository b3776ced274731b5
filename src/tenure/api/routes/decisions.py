"""Decision routes: the newest decisions, and one with its candidates, verdicts and lineage.

(No `from __future__ import annotations` here: FastAPI reads the dependency annotations.)
"""

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query

from tenure.api.auth import Caller
from tenure.api.service import Service
from tenure.store import queries


def router(svc: Service) -> APIRouter:
    """The decision routes of one service."""
    api = APIRouter(prefix="/v1/decisions", tags=["decisions"])
    readers = svc.guard("operator", "auditor")

    @api.get("")
    def list_decisions(
        who: Annotated[Caller, Depends(readers)],
        customer_id: str | None = None,
        status: Annotated[str | None, Query(pattern="^(action|none|suppressed|human)$")] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    ) -> list[dict[str, Any]]:
        """Decisions, newest first (optionally one customer's, or one status)."""
        with svc.store.reader() as conn:
            return queries.decisions(conn, customer_id=customer_id, limit=limit, status=status)

    @api.get("/{decision_id}")
    def get_decision(decision_id: str, who: Annotated[Caller, Depends(readers)]) -> dict[str, Any]:
        """A decision with its candidates, guardrail verdicts and lineage."""
        with svc.store.reader() as conn:
            found = queries.decision_record(conn, decision_id)
        if found is None:
            raise HTTPException(404, f"no decision {decision_id!r}")
        return found

    return api

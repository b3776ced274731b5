"""Policy routes: list versions, upload a draft, promote through the lifecycle with approval.

The four-eyes rule is the registry's (`policy.lifecycle.plan_transition`): the caller's token
holder is the author of an upload and the `by` of a promotion, so an author cannot approve
their own version however many tokens they hold. A policy author may move versions to shadow
or retire them; making a version decide for real (canary, active) takes an approver.

(No `from __future__ import annotations` here: FastAPI reads the dependency annotations.)
"""

import datetime as dt
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends
from pydantic import BaseModel, Field

from tenure.api.auth import Caller
from tenure.api.paging import Keyset, Page, paged
from tenure.api.service import Service
from tenure.channels.messages import Templates, check_policy
from tenure.errors import ConfigError
from tenure.policy.model import Policy, parse_policy
from tenure.services import policies as registry
from tenure.store import service_reads

POLICIES = Keyset("policies", (dt.datetime, str))


class Promotion(BaseModel):
    """A lifecycle move."""

    to: Literal["shadow", "canary", "active", "retired"]
    percent: float | None = Field(
        default=None, gt=0, lt=100, description="For a canary: the share of customers."
    )


def router(svc: Service) -> APIRouter:
    """The policy routes of one service."""
    api = APIRouter(prefix="/v1/policies", tags=["policies"])
    templates = Templates.of(svc.settings.workspace)
    readers = svc.guard("policy-author", "approver", "operator", "auditor")

    @api.get("")
    def list_policies(
        who: Annotated[Caller, Depends(readers)],
        page: Annotated[Page, Depends(paged(POLICIES))],
    ) -> list[dict[str, Any]]:
        """Registered versions, newest first, with status, author and approver."""
        with svc.store.reader() as conn:
            rows = service_reads.policies_page(conn, page.ask, page.after)
        return page.answer(rows, lambda r: (r["registered_at"], r["policy_hash"]))

    @api.get("/schema")
    def policy_schema(who: Annotated[Caller, Depends(readers)]) -> dict[str, Any]:
        """The JSON Schema a policy document must follow."""
        return Policy.model_json_schema()

    @api.post("", status_code=201)
    def upload_policy(
        who: Annotated[Caller, Depends(svc.guard("policy-author"))],
        document: Annotated[
            dict[str, Any], Body(description="A policy (see /v1/policies/schema).")
        ],
    ) -> dict[str, Any]:
        """Register a policy document as a draft version authored by the caller."""
        policy = parse_policy(document, "the uploaded document")
        # Every action's journey exists, and every message it sends renders: refused here, not
        # when a customer is written to.
        check_policy(policy, svc.journeys, templates, svc.settings.channels)
        with svc.store.transaction() as conn:
            version, new = registry.register(conn, policy, who.name, dt.datetime.now(dt.UTC))
        return {
            "version": version,
            "policy_id": policy.id,
            "label": policy.label,
            "status": "draft" if new else "already registered",
        }

    @api.post("/{version}/promote")
    def promote_policy(
        version: str,
        move: Promotion,
        who: Annotated[Caller, Depends(svc.guard("policy-author", "approver"))],
    ) -> dict[str, Any]:
        """Move a version to shadow, canary, active or retired; recorded in the audit chain."""
        if who.role == "policy-author" and move.to in ("canary", "active"):
            raise ConfigError(f"going {move.to} needs an approver's token")
        with svc.store.transaction() as conn:
            if who.role == "policy-author" and move.to == "retired":
                current = {r["policy_hash"]: r["status"] for r in registry.listing(conn)}
                if any(v.startswith(version) and s == "active" for v, s in current.items()):
                    raise ConfigError("retiring the active version needs an approver's token")
            plan = registry.promote(
                conn, version, move.to, who.name, move.percent, dt.datetime.now(dt.UTC)
            )
        svc.reload_policies()
        return plan.to_record()

    return api

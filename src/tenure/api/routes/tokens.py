"""Token routes (admin only): list tokens (never their secrets), create one with an optional
expiry (its secret shown once), and revoke one at once (its dashboard sessions end with it).

(No `from __future__ import annotations` here: FastAPI reads the dependency annotations.)
"""

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException
from pydantic import BaseModel, Field

from tenure.api.auth import ROLES, Caller, create_token, duration, revoke_token, token_page
from tenure.api.paging import Keyset, Page, paged
from tenure.api.service import Service

TOKENS = Keyset("tokens", (dt.datetime, str))


class NewToken(BaseModel):
    """A token to create: its role, for a partner token the partner, who holds it, and for how
    long it lives (none: until revoked)."""

    role: str = Field(description=f"One of {', '.join(ROLES)}.")
    partner: str | None = Field(default=None, min_length=1, max_length=200)
    name: str = Field(default="", max_length=200, description="Who holds the token.")
    expires_in: str | None = Field(
        default=None, max_length=10, description="A lifetime such as 90m, 12h, 30d or 2w."
    )


def router(svc: Service) -> APIRouter:
    """The token routes of one service."""
    api = APIRouter(prefix="/v1/tokens", tags=["tokens"])
    admin = svc.guard()

    @api.get("")
    def tokens(
        who: Annotated[Caller, Depends(admin)], page: Annotated[Page, Depends(paged(TOKENS))]
    ) -> list[dict[str, Any]]:
        """Every token, oldest first: id, name, role, partner, created, expires, revoked."""
        with svc.store.reader() as conn:
            rows = token_page(conn, page.ask, page.after)
        return page.answer(rows, lambda r: (r["created_at"], r["token_id"]))

    @api.post("", status_code=201)
    def create(body: NewToken, who: Annotated[Caller, Depends(admin)]) -> dict[str, Any]:
        """Create a token; `token` is its secret, shown only in this answer."""
        now = dt.datetime.now(dt.UTC)
        lifetime = duration(body.expires_in) if body.expires_in else None
        with svc.store.transaction() as conn:
            token_id, token = create_token(conn, body.role, body.partner, body.name, now, lifetime)
        expires = (now + lifetime).isoformat() if lifetime else None
        return {"token_id": token_id, "role": body.role, "expires_at": expires, "token": token}

    @api.delete("/{token_id}")
    def revoke(token_id: str, who: Annotated[Caller, Depends(admin)]) -> dict[str, Any]:
        """Revoke a token: refused from now on, in the API and the dashboard."""
        with svc.store.transaction() as conn:
            found = revoke_token(conn, token_id, dt.datetime.now(dt.UTC))
        if found is None:
            raise HTTPException(404, f"no token {token_id!r}")
        return found

    return api

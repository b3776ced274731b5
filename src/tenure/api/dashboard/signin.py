"""Sign-in and sign-out: an API token is posted once and kept in an HttpOnly, SameSite=Strict
cookie; every page looks it up again (see `Pages.session`), so a revoked token is out at once.

(No `from __future__ import annotations` here: FastAPI reads the route annotations.)
"""

from typing import Annotated

from fastapi import Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from tenure.api.auth import caller
from tenure.api.dashboard.common import COOKIE, PREFIX, READ, Pages


def _next(value: str | None) -> str:
    # Only back into the dashboard: never an open redirect to another site.
    if value and value.startswith(PREFIX) and not value.startswith("//"):
        return value
    return PREFIX


def login_form(pages: Pages, request: Request, next: str | None = None) -> HTMLResponse:
    """The sign-in page."""
    return pages.page(request, "login.html", None, next=_next(next), error=None)


def login(
    pages: Pages,
    request: Request,
    token: Annotated[str, Form()],
    next: Annotated[str, Form()] = PREFIX,
) -> Response:
    """Check a token and keep it in the session cookie."""
    with pages.store.reader() as conn:
        who = caller(conn, token.strip())
    if who is None or who.role not in READ:
        error = (
            "Unknown or revoked token."
            if who is None
            else f"Role {who.role!r} cannot use the dashboard (operator, auditor or admin)."
        )
        code = 401 if who is None else 403
        return pages.page(request, "login.html", None, code, next=_next(next), error=error)
    response = RedirectResponse(_next(next), status_code=303)
    response.set_cookie(
        COOKIE,
        token.strip(),
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path=PREFIX,
    )
    return response


def logout(pages: Pages, request: Request, csrf: Annotated[str, Form()] = "") -> Response:
    """Forget the session."""
    who = pages.form_session(request, csrf)
    if isinstance(who, Response):
        return who
    response = RedirectResponse(f"{PREFIX}/login", status_code=303)
    response.delete_cookie(COOKIE, path=PREFIX)
    return response

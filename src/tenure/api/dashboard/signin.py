"""Sign-in and sign-out. An API token is posted once and exchanged for a new server-side session,
whose random id the cookie holds (never the token); every page looks the session up again (see
`Pages.session`). The sign-in form is protected from cross-site posts by a double submit: the
form page sets a random value in a cookie of its own and in a hidden field, and a sign-in is
refused unless the two agree.

(No `from __future__ import annotations` here: FastAPI reads the route annotations.)
"""

import datetime as dt
import secrets
from typing import Annotated

from fastapi import Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from tenure.api.auth import caller, end_session, start_session
from tenure.api.dashboard.common import (
    COOKIE,
    LOGIN_COOKIE,
    PREFIX,
    READ,
    SIGN_IN,
    Pages,
    keep_cookie,
    same,
)


def _next(value: str | None) -> str:
    # Only back into the dashboard: never an open redirect to another site.
    if value and value.startswith(PREFIX) and not value.startswith("//"):
        return value
    return PREFIX


def _login_page(
    pages: Pages, request: Request, next: str | None, error: str | None = None, code: int = 200
) -> HTMLResponse:
    """The sign-in page, with its form token in a hidden field and in the sign-in cookie (the
    browser's existing one kept, so two open sign-in tabs both work)."""
    given = request.cookies.get(LOGIN_COOKIE, "")
    login_csrf = given if 20 <= len(given) <= 64 and given.isascii() else secrets.token_urlsafe(32)
    response = pages.page(
        request, "login.html", None, code, next=_next(next), error=error, login_csrf=login_csrf
    )
    keep_cookie(response, request, LOGIN_COOKIE, login_csrf)
    return response


def login_form(pages: Pages, request: Request, next: str | None = None) -> HTMLResponse:
    """The sign-in page."""
    return _login_page(pages, request, next)


def login(
    pages: Pages,
    request: Request,
    token: Annotated[str, Form()],
    next: Annotated[str, Form()] = PREFIX,
    csrf: Annotated[str, Form()] = "",
) -> Response:
    """Check the form's token and the API token; start a new session (ending the browser's
    previous one) and keep its id in the session cookie."""
    if not same(csrf, request.cookies.get(LOGIN_COOKIE, "")):
        error = "This sign-in form did not come from this browser's sign-in page; try again."
        return _login_page(pages, request, next, error, 403)
    now = dt.datetime.now(dt.UTC)
    with pages.store.reader() as conn:
        who = caller(conn, token.strip(), now)
    if who is None or who.role not in SIGN_IN:
        error = (
            "Unknown or revoked token."
            if who is None
            else f"Role {who.role!r} cannot use the dashboard ({', '.join(SIGN_IN)})."
        )
        return _login_page(pages, request, next, error, 401 if who is None else 403)
    with pages.store.transaction() as conn:
        previous = request.cookies.get(COOKIE)
        if previous:
            end_session(conn, previous, now)
        started = start_session(conn, token.strip(), now)
    if started is None:  # revoked between the two looks
        return _login_page(pages, request, next, "Unknown or revoked token.", 401)
    target = _next(next)
    if who.role not in READ and target == PREFIX:
        target = f"{PREFIX}/policies"  # the one page a policy author or approver opens
    response = RedirectResponse(target, status_code=303)
    keep_cookie(response, request, COOKIE, started[0])
    response.delete_cookie(LOGIN_COOKIE, path=PREFIX)
    return response


def logout(pages: Pages, request: Request, csrf: Annotated[str, Form()] = "") -> Response:
    """End the session."""
    who = pages.form_session(request, csrf, SIGN_IN)
    if isinstance(who, Response):
        return who
    with pages.store.transaction() as conn:
        end_session(conn, request.cookies.get(COOKIE, ""), dt.datetime.now(dt.UTC))
    response = RedirectResponse(f"{PREFIX}/login", status_code=303)
    response.delete_cookie(COOKIE, path=PREFIX)
    return response

"""What every dashboard page shares: the templates and their filters, the page response with
its security headers, the signed-in session, and the CSRF check of forms.

The session cookie holds an opaque session id (never the API token), looked up on every request:
a session ends at sign-out, when its token is revoked or expires, after 30 idle minutes or 12
hours. A form carries a token derived from the session id (HMAC), so a form can only come from a
page this session was shown; the sign-in form, before any session, carries the value of a
cookie of its own (double submit). Cookies are HttpOnly, SameSite=Strict, and Secure when the
request came over https.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jinja2
from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from tenure.api.auth import Caller, session_caller, touch_session
from tenure.channels.courier import Courier
from tenure.journeys.library import JourneyLibrary
from tenure.loyalty.contracts import Contract
from tenure.scoring.types import Scorer
from tenure.store.db import Store

PREFIX = "/dashboard"
COOKIE = "tenure_dashboard"  # the session id
LOGIN_COOKIE = "tenure_login"  # the sign-in form's CSRF token, before there is a session
READ = ("admin", "operator", "auditor")
RESOLVE = ("admin", "operator")  # resolve a task, retry a dead letter
# Policy people sign in for the policies page alone: an author moves versions to shadow or
# retires them, an approver (or admin) makes one decide for real; the four-eyes rule is the
# registry's, whoever asks.
POLICY = ("policy-author", "approver")
PROMOTE = ("admin", *POLICY)
SIGN_IN = (*READ, *POLICY)
TEMPLATES = Path(__file__).parents[1] / "templates"
HEADERS = {
    # Nothing runs and nothing is fetched: the pages are HTML, inline CSS and inline SVG.
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def csrf_token(session: str) -> str:
    """The form token of a session: only someone holding the session id can compute it."""
    return hmac.new(session.encode(), b"tenure dashboard form", hashlib.sha256).hexdigest()


def same(given: str, expected: str) -> bool:
    """Whether a posted token is the expected one (and there is one), in constant time."""
    # Compared as bytes: compare_digest refuses str with non-ASCII characters (a 500).
    return bool(expected) and hmac.compare_digest(given.encode(), expected.encode())


def keep_cookie(response: Response, request: Request, name: str, value: str) -> None:
    """Set one of the dashboard's cookies: HttpOnly, SameSite=Strict, only under the dashboard,
    and Secure when the request came over https."""
    response.set_cookie(
        name,
        value,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path=PREFIX,
    )


def _when(value: Any) -> str:
    """A stored time (aware datetime or epoch seconds) as 'YYYY-MM-DD HH:MM' UTC."""
    if value is None:
        return "-"
    if isinstance(value, int | float):
        value = dt.datetime.fromtimestamp(value, dt.UTC)
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M")


def _short_task(task_id: str) -> str:
    """`<decision_id>:<step>:<visit>` as 'd-28329dc2… call #1' (the full id is its title)."""
    parts = task_id.rsplit(":", 2)
    if len(parts) != 3:
        return task_id
    return f"{parts[0][:10]}… {parts[1]} #{parts[2]}"


def environment() -> jinja2.Environment:
    """The templates' environment, with the filters the pages use."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,  # every value is escaped, whatever the template's name
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = _when
    env.filters["short_task"] = _short_task
    env.filters["seg"] = lambda x: quote(str(x), safe="")  # one path segment, "/" included
    env.filters["pct"] = lambda x, signed=False: (
        "-" if x is None else f"{x:{'+' if signed else ''}.1%}"
    )
    env.filters["num"] = lambda x, places=0: "-" if x is None else f"{x:,.{places}f}"
    return env


def strongest_first(contributions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Feature contributions, the strongest (either way) first."""
    return sorted(contributions, key=lambda c: -abs(c["weight"]))


def widest(contributions: list[dict[str, Any]]) -> float:
    """The scale of a contribution bar chart."""
    return max((abs(c["weight"]) for c in contributions), default=0.0) or 1.0


def is_period(value: str) -> bool:
    """Whether `value` is a month written YYYY-MM."""
    try:
        dt.datetime.strptime(value, "%Y-%m")
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class Pages:
    """What the pages of one workspace read from (loaded once by the service), and how they
    answer."""

    store: Store
    scorer: Scorer
    contracts: Sequence[Contract]
    library: JourneyLibrary
    templates: Jinja2Templates
    courier: Courier  # retries dead letters (one attempt each: see `deliveries`)

    def page(
        self, request: Request, name: str, who: Caller | None, code: int = 200, **context: Any
    ) -> HTMLResponse:
        """A rendered template, with what every page shows and the security headers."""
        token = request.cookies.get(COOKIE, "")
        response = self.templates.TemplateResponse(
            request,
            name,
            {
                "who": who,
                "csrf": csrf_token(token) if who else "",
                "prefix": PREFIX,
                "may_read": who is not None and who.role in READ,
                "may_resolve": who is not None and who.role in RESOLVE,
                "may_promote": who is not None and who.role in PROMOTE,
                **context,
            },
            status_code=code,
        )
        response.headers.update(HEADERS)
        return response

    def scorer_now(self, request: Request) -> Scorer:
        """The scorer the serving process decides with now (a model promoted since it started,
        at once), else the one loaded at start."""
        knowledge = getattr(getattr(request.app.state, "service", None), "knowledge", None)
        return getattr(knowledge, "scorer", None) or self.scorer

    def list_page(
        self, request: Request, name: str, who: Caller, shown: Any, **context: Any
    ) -> HTMLResponse:
        """A page showing one page of a list (`lists.Shown`)."""
        return self.page(request, name, who, shown=shown, **context)

    def message(
        self, request: Request, who: Caller | None, code: int, title: str, message: str
    ) -> HTMLResponse:
        """A page that only says something (not found, not allowed)."""
        return self.page(request, "message.html", who, code, title=title, message=message)

    def signed_in(self, session: str) -> Caller | None:
        """The caller of a live session (None: unknown, ended, timed out, or its token revoked
        or expired); asked again on every request, so any of these is out at once."""
        now = dt.datetime.now(dt.UTC)
        with self.store.reader() as conn:
            found = session_caller(conn, session, now)
        if found is None:
            return None
        who, stale = found
        if stale:
            with self.store.transaction() as conn:
                touch_session(conn, session, now)
        return who

    def session(self, request: Request, roles: Sequence[str] = READ) -> Caller | Response:
        """The signed-in caller, or the response to send instead (to login, or forbidden)."""
        token = request.cookies.get(COOKIE)
        who = self.signed_in(token) if token else None
        if who is None:
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            response = RedirectResponse(f"{PREFIX}/login?next={quote(target)}", status_code=303)
            if token:
                response.delete_cookie(COOKIE, path=PREFIX)
            return response
        if who.role not in roles:
            return self.message(
                request,
                who,
                403,
                "Not allowed",
                f"Role {who.role!r} may not open this page (it needs one of: {', '.join(roles)}).",
            )
        return who

    def form_session(
        self, request: Request, csrf: str, roles: Sequence[str] = READ
    ) -> Caller | Response:
        """The session of a posted form: as `session`, and refused unless its CSRF token is the
        session's."""
        who = self.session(request, roles)
        if isinstance(who, Response):
            return who
        token = request.cookies.get(COOKIE, "")
        if not (token and same(csrf, csrf_token(token))):
            return self.message(
                request,
                who,
                403,
                "Form refused",
                "This form did not come from a page of this session; open the page again.",
            )
        return who


def day_range(since: str, until: str) -> tuple[dt.datetime | None, dt.datetime | None]:
    """Days written YYYY-MM-DD (either may be empty) as the times [since 00:00, the day after
    until 00:00) UTC; ValueError naming the field that is not a day."""
    bounds: list[dt.datetime | None] = []
    for name, text, extra in (("from", since, 0), ("to", until, 1)):
        if not text.strip():
            bounds.append(None)
            continue
        try:
            day = dt.date.fromisoformat(text.strip())
        except ValueError:
            raise ValueError(
                f"{name} must be a day written 2026-03-01, not {text[:20]!r}"
            ) from None
        start = dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)
        bounds.append(start + dt.timedelta(days=extra))
    return bounds[0], bounds[1]

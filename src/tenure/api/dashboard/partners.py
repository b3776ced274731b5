"""The partners page: settlement per funder for a month, funded points per partner, statement
reconciliation and adjustments.

(No `from __future__ import annotations` here: FastAPI reads the route annotations.)
"""

import datetime as dt
from typing import Annotated, Any

from fastapi import Form, Request
from fastapi.responses import HTMLResponse, Response

from tenure.api.auth import Caller
from tenure.api.dashboard.common import Pages, is_period
from tenure.errors import TenureError
from tenure.loyalty.partners import parse_statement, reconcile
from tenure.services.loyalty import adjustments, funded_points, settlement
from tenure.store import dashboard_reads, queries
from tenure.store.db import Connection


def latest_period(conn: Connection) -> str:
    """The newest month with something to settle; without any, the month event time has got to
    (else today's)."""
    found = dashboard_reads.newest_period(conn)
    if found is not None:
        return found
    return f"{queries.event_time(conn) or dt.datetime.now(dt.UTC):%Y-%m}"


def months_around(period: str) -> tuple[str, str]:
    """The months before and after a YYYY-MM month."""
    year, month = (int(x) for x in period.split("-"))
    before = f"{year - (month == 1)}-{(month - 2) % 12 + 1:02d}"
    after = f"{year + (month == 12)}-{month % 12 + 1:02d}"
    return before, after


def partners_page(
    pages: Pages,
    request: Request,
    who: Caller,
    period: str | None,
    result: dict[str, Any] | None = None,
    status: int = 200,
) -> HTMLResponse:
    """The page for a month (the newest with accruals when none or a bad one is asked for)."""
    contracts = pages.contracts
    with pages.store.reader() as conn:
        chosen = period if period and is_period(period) else latest_period(conn)
        owed = settlement(conn, contracts, chosen)
        names = sorted({p for c in contracts for p in (c.oem, *c.dealers)})
        funded = {p: funded_points(conn, p, chosen) for p in names}
        adjusted = adjustments(conn)
    return pages.page(
        request,
        "partners.html",
        who,
        status,
        period=chosen,
        around=months_around(chosen),
        bad_period=bool(period) and period != chosen,
        contracts=contracts,
        owed=owed,
        funded=[(p, len(refs), sum(refs.values())) for p, refs in funded.items()],
        adjustments=adjusted,
        partners=names,
        result=result,
    )


def partners(pages: Pages, request: Request, period: str | None = None) -> Response:
    """Settlement per funder for a month, funded points per partner, adjustments."""
    who = pages.session(request)
    if isinstance(who, Response):
        return who
    return partners_page(pages, request, who, period)


def partners_reconcile(
    pages: Pages,
    request: Request,
    partner: Annotated[str, Form()],
    period: Annotated[str, Form()],
    statement: Annotated[str, Form()],
    csrf: Annotated[str, Form()] = "",
) -> Response:
    """A partner's statement (CSV: reference, points) against the ledger for a month."""
    who = pages.form_session(request, csrf)
    if isinstance(who, Response):
        return who
    if not is_period(period):
        result = {
            "partner": partner,
            "error": f"period must look like 2026-03, not {period!r}",
            "report": None,
        }
        return partners_page(pages, request, who, None, result, 422)
    try:
        lines = parse_statement(statement, "statement")
    except TenureError as exc:
        result = {"partner": partner, "error": str(exc), "report": None}
        return partners_page(pages, request, who, period, result, 422)
    with pages.store.reader() as conn:
        funded = funded_points(conn, partner, period)
    report = reconcile(partner, period, lines, funded)
    return partners_page(
        pages, request, who, period, {"partner": partner, "error": None, "report": report}
    )

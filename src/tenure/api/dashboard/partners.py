"""The partners page: settlement per funder for a month, funded points per partner, statement
reconciliation and adjustments.

The settlement and the adjustments are lists (`lists.py`), each a page at a time and as CSV;
`?table=settlement` or `?table=adjustments` says which one `cursor`, `limit` and `format=csv`
are for (the other shows its first page).

(No `from __future__ import annotations` here: FastAPI reads the route annotations.)
"""

import datetime as dt
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import Form, HTTPException, Request
from fastapi.responses import Response

from tenure.api.auth import Caller
from tenure.api.dashboard.common import PREFIX, Pages, is_period
from tenure.api.dashboard.lists import FORMATS, PAGE, Listing, Shown, export, held, page_of
from tenure.api.paging import Keyset
from tenure.errors import TenureError
from tenure.loyalty.partners import parse_statement, reconcile
from tenure.services.loyalty import funded_points, settlement
from tenure.store import dashboard_reads, queries
from tenure.store.db import Connection

SETTLEMENT = Keyset("dashboard-settlement", (str, str))
ADJUSTMENTS = Keyset("dashboard-adjustments", (dt.datetime, str))
TABLES = ("settlement", "adjustments")
Paging = tuple[str, str | None, int, str]  # (table, cursor, limit, format)
FIRST: Paging = ("", None, PAGE, "html")


def _columns(*names: str) -> tuple[tuple[str, Any], ...]:
    return tuple((name, lambda r, name=name: r[name]) for name in names)


def tables(period: str, owed: list[dict[str, Any]]) -> dict[str, Listing]:
    """The page's two lists: the month's settlement (by contract and funder), and every
    adjustment, newest first."""

    def owed_key(r: dict[str, Any]) -> tuple[str, str]:
        return (r["contract"], r["funder"])

    return {
        "settlement": Listing(
            f"settlement-{period}",
            SETTLEMENT,
            held(owed, owed_key),
            owed_key,
            _columns("contract", "funder", "period", "points", "point_value", "owed"),
        ),
        "adjustments": Listing(
            "adjustments",
            ADJUSTMENTS,
            dashboard_reads.adjustments_page,
            lambda r: (r["created_at"], r["adjustment_id"]),
            _columns(
                *("adjustment_id", "partner", "oem", "period", "reference", "points", "reason"),
                *("author", "status", "approved_by", "created_at", "decided_at"),
            ),
        ),
    }


def shown_tables(
    pages: Pages, request: Request, period: str, listings: dict[str, Listing], paging: Paging
) -> dict[str, Shown]:
    """A page of each list: the one `paging` names from its cursor, the other from the start;
    each one's links carry its name and the month (HTTPException 400: not a cursor of it)."""
    table, cursor, limit, _ = paging
    shown = {}
    for name, listing in listings.items():
        if name == table and request.method == "GET":
            url = request.url.include_query_params(table=name, period=period)
            where = f"{url.path}?{url.query}"
        else:  # from the start (or shown by the reconciliation form, posted elsewhere)
            where = f"{PREFIX}/partners?{urlencode({'period': period, 'table': name})}"
        mine = name == table
        shown[name] = page_of(
            pages, request, listing, cursor if mine else None, limit if mine else PAGE, where
        )
    return shown


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


def refused(pages: Pages, request: Request, who: Caller, paging: Paging) -> Response | None:
    """The 400 page for a table or format the page does not have, or a cursor or CSV export
    that does not say which table it is for."""
    table, cursor, _, form = paging
    if table not in ("", *TABLES):
        text = f"table is {' or '.join(TABLES)}, not {table[:20]!r}."
        return pages.message(request, who, 400, "No such table", text)
    if form not in FORMATS:
        text = f"format is html or csv, not {form[:20]!r}."
        return pages.message(request, who, 400, "No such format", text)
    if not table and (cursor or form == "csv"):
        text = f"Say which table: table={' or table='.join(TABLES)}."
        return pages.message(request, who, 400, "Which table?", text)
    return None


def partners_page(
    pages: Pages,
    request: Request,
    who: Caller,
    period: str | None,
    result: dict[str, Any] | None = None,
    status: int = 200,
    paging: Paging = FIRST,
) -> Response:
    """The page for a month (the newest with accruals when none or a bad one is asked for), or
    one of its lists as CSV."""
    refusal = refused(pages, request, who, paging)
    if refusal is not None:
        return refusal
    contracts = pages.contracts
    with pages.store.reader() as conn:
        chosen = period if period and is_period(period) else latest_period(conn)
        owed = settlement(conn, contracts, chosen)
        names = sorted({p for c in contracts for p in (c.oem, *c.dealers)})
        funded = {p: funded_points(conn, p, chosen) for p in names}
    listings = tables(chosen, owed)
    if paging[3] == "csv":
        return export(pages, listings[paging[0]])
    try:
        shown = shown_tables(pages, request, chosen, listings, paging)
    except HTTPException:
        text = f"That cursor is not one of this list's ({paging[0]}): open the page again."
        return pages.message(request, who, 400, "Not a cursor of this list", text)
    return pages.page(
        request,
        "partners.html",
        who,
        status,
        period=chosen,
        around=months_around(chosen),
        bad_period=bool(period) and period != chosen,
        contracts=contracts,
        owed=shown["settlement"],
        funded=[(p, len(refs), sum(refs.values())) for p, refs in funded.items()],
        adjustments=shown["adjustments"],
        partners=names,
        result=result,
    )


def partners(
    pages: Pages,
    request: Request,
    period: str | None = None,
    table: str = "",
    cursor: str | None = None,
    limit: int = PAGE,
    format: str = "html",
) -> Response:
    """Settlement per funder for a month, funded points per partner, adjustments; the
    settlement and the adjustments a page at a time, or as CSV."""
    who = pages.session(request)
    if isinstance(who, Response):
        return who
    return partners_page(pages, request, who, period, paging=(table, cursor, limit, format))


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

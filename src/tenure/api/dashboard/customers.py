"""Customer pages: a search by id prefix, one customer with the risk and what drives it,
decisions, journeys, ledger and newest events, and a customer's whole event timeline.

(No `from __future__ import annotations` here: FastAPI reads the route annotations.)
"""

import datetime as dt
from functools import partial
from typing import Any

from fastapi import Request
from fastapi.responses import Response

from tenure.api.dashboard.common import Pages, strongest_first, widest
from tenure.api.dashboard.lists import PAGE, Listing, answer
from tenure.api.paging import Keyset
from tenure.loyalty.ledger import member_account
from tenure.services.views import customer_view
from tenure.store import acts, dashboard_reads

NEWEST_EVENTS = 20  # on the customer's page; the timeline page has every one
CUSTOMERS = Keyset("dashboard-customers", (str,))
EVENTS = Keyset("dashboard-events", (dt.datetime, str))
EVENT_COLUMNS = ("occurred_at", "event_id", "type", "source", "partner_id")
LEDGER = Keyset("dashboard-ledger", (float, str))


def ledger_listing(customer_id: str, account: str) -> Listing:
    """A member's ledger, newest first: each transfer signed as the member sees it."""

    def mine(r: dict[str, Any]) -> bool:
        return bool(r["credit"] == account)

    return Listing(
        f"ledger-{customer_id}"[:80],
        LEDGER,
        lambda conn, n, after: dashboard_reads.ledger_page(conn, account, n, after),
        lambda r: (r["at"], r["transfer_id"]),
        (
            ("at", lambda r: dt.datetime.fromtimestamp(r["at"], dt.UTC)),
            ("transfer_id", lambda r: r["transfer_id"]),
            ("kind", lambda r: r["kind"]),
            ("points", lambda r: r["amount"] if mine(r) else -r["amount"]),
            ("status", lambda r: r["status"]),
            ("other_side", lambda r: r["debit"] if mine(r) else r["credit"]),
            ("reference", lambda r: r["ref"]),
        ),
    )


def customers(
    pages: Pages,
    request: Request,
    q: str = "",
    cursor: str | None = None,
    limit: int = PAGE,
    format: str = "html",
) -> Response:
    """Customers whose id starts with `q`, a page at a time."""
    who = pages.session(request)
    if isinstance(who, Response):
        return who
    prefix = q.strip()
    listing = Listing(
        "customers",
        CUSTOMERS,
        lambda conn, n, after: dashboard_reads.customers_page(conn, prefix, n, after),
        lambda r: (r["customer_id"],),
        (("customer_id", lambda r: r["customer_id"]), ("last_seen", lambda r: r["last_seen"])),
    )
    render = partial(pages.list_page, request, "customers.html", who, q=prefix)
    return answer(pages, request, who, listing, (cursor, limit, format), render)


def events(
    pages: Pages,
    request: Request,
    customer: str = "",
    cursor: str | None = None,
    limit: int = PAGE,
    format: str = "html",
) -> Response:
    """A customer's events, newest first (event time), a page at a time."""
    who = pages.session(request)
    if isinstance(who, Response):
        return who
    listing = Listing(
        f"events-{customer}"[:80],
        EVENTS,
        lambda conn, n, after: dashboard_reads.events_page(conn, customer, n, after),
        lambda r: (r["occurred_at"], r["event_id"]),
        (
            *((name, lambda r, name=name: r[name]) for name in EVENT_COLUMNS),
            ("payload", lambda r: {k: v for k, v in r["payload"].items() if v is not None}),
        ),
    )
    render = partial(pages.list_page, request, "events.html", who, customer=customer)
    return answer(pages, request, who, listing, (cursor, limit, format), render)


def customer(
    pages: Pages,
    request: Request,
    customer_id: str,
    cursor: str | None = None,
    limit: int = PAGE,
    format: str = "html",
) -> Response:
    """One customer: risk and why, decisions, journeys, newest events, and the ledger a page at
    a time (or as CSV)."""
    who = pages.session(request)
    if isinstance(who, Response):
        return who
    with pages.store.reader() as conn:
        view = customer_view(conn, customer_id, scorer=pages.scorer_now(request))
        if view is None:
            return pages.message(
                request,
                who,
                404,
                "No such customer",
                f"The workspace has never seen customer {customer_id!r}.",
            )
        newest = dashboard_reads.events_page(conn, view["customer_id"], NEWEST_EVENTS + 1)
        account = member_account(view["loyalty"]["programme"], customer_id)
        journeys = [acts.journey(conn, j["decision_id"]) or j for j in view["journeys"]]
    contributions = strongest_first(view["score"]["contributions"])
    render = partial(
        pages.list_page,
        request,
        "customer.html",
        who,
        view=view,
        contributions=contributions,
        widest=widest(contributions),
        events=newest[:NEWEST_EVENTS],
        more_events=len(newest) > NEWEST_EVENTS,
        journeys=journeys,
        account=account,
    )
    listing = ledger_listing(customer_id, account)
    return answer(pages, request, who, listing, (cursor, limit, format), render)

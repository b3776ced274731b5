"""Customer pages: a search by id prefix, and one customer with the risk and what drives it,
decisions, journeys, ledger and event timeline.

(No `from __future__ import annotations` here: FastAPI reads the route annotations.)
"""

from fastapi import Request
from fastapi.responses import Response

from tenure.api.dashboard.common import Pages, strongest_first, widest
from tenure.loyalty.ledger import member_account
from tenure.services.views import customer_view
from tenure.store import acts, ledger, queries

TIMELINE_EVENTS = 100
SEARCH_LIMIT = 50


def customers(pages: Pages, request: Request, q: str = "") -> Response:
    """Customers whose id starts with `q`."""
    who = pages.session(request)
    if isinstance(who, Response):
        return who
    prefix = q.strip()
    with pages.store.reader() as conn:
        found = queries.customers_by_prefix(conn, prefix, SEARCH_LIMIT + 1)
    return pages.page(
        request,
        "customers.html",
        who,
        q=prefix,
        found=found[:SEARCH_LIMIT],
        more=len(found) > SEARCH_LIMIT,
    )


def customer(pages: Pages, request: Request, customer_id: str) -> Response:
    """One customer: risk and why, decisions, journeys, ledger and event timeline."""
    who = pages.session(request)
    if isinstance(who, Response):
        return who
    with pages.store.reader() as conn:
        view = customer_view(conn, customer_id, scorer=pages.scorer)
        if view is None:
            return pages.message(
                request,
                who,
                404,
                "No such customer",
                f"The workspace has never seen customer {customer_id!r}.",
            )
        events = queries.customer_events(conn, customer_id, TIMELINE_EVENTS)
        account = member_account(view["loyalty"]["programme"], customer_id)
        transfers = ledger.history(conn, account, 50)
        journeys = [acts.journey(conn, j["decision_id"]) or j for j in view["journeys"]]
    contributions = strongest_first(view["score"]["contributions"])
    return pages.page(
        request,
        "customer.html",
        who,
        view=view,
        contributions=contributions,
        widest=widest(contributions),
        events=events,
        journeys=journeys,
        account=account,
        transfers=transfers,
    )

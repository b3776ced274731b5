"""The journeys page: every journey by state, journey, current step and age (days since it
started, counted to where event time has got to, so a replayed history reads as it did live),
a page at a time.

(No `from __future__ import annotations` here: FastAPI reads the route annotations.)
"""

import datetime as dt
from functools import partial
from typing import Any

from fastapi import Request
from fastapi.responses import Response

from tenure.api.dashboard.common import Pages
from tenure.api.dashboard.lists import PAGE, Listing, answer
from tenure.api.paging import Keyset
from tenure.store import dashboard_reads, queries
from tenure.store.dashboard_reads import JourneyFilter
from tenure.store.db import Connection

JOURNEYS = Keyset("dashboard-journeys", (dt.datetime, str))
STATES = ("pending", "running", "completed", "failed")
COLUMNS = tuple(
    (name, lambda r, name=name: r[name])
    for name in (
        "started_at",
        "decision_id",
        "customer_id",
        "journey_id",
        "status",
        "step",
        "outcome",
        "age_days",
        "updated_at",
    )
)


def _days(text: str, name: str) -> float | None:
    """A number of days typed in a filter (empty: none); ValueError naming the filter."""
    if not text.strip():
        return None
    try:
        days = float(text)
    except ValueError:
        raise ValueError(f"{name} is a number of days, not {text[:20]!r}") from None
    if not 0 <= days <= 36500:
        raise ValueError(f"{name} is between 0 and 36500 days")
    return days


def journeys(
    pages: Pages,
    request: Request,
    status: str = "",
    journey: str = "",
    step: str = "",
    older: str = "",
    younger: str = "",
    cursor: str | None = None,
    limit: int = PAGE,
    format: str = "html",
) -> Response:
    """Journeys newest first, by state, journey, step and age, a page at a time."""
    who = pages.session(request)
    if isinstance(who, Response):
        return who
    try:
        if status not in ("", *STATES):
            raise ValueError(f"state is one of {', '.join(STATES)}")
        least, most = _days(older, "older than"), _days(younger, "younger than")
    except ValueError as exc:
        return pages.message(request, who, 400, "Filter refused", str(exc))
    with pages.store.reader() as conn:
        now = queries.event_time(conn) or dt.datetime.now(dt.UTC)
    where = JourneyFilter(
        status or None,
        journey.strip() or None,
        step.strip() or None,
        now - dt.timedelta(days=most) if most is not None else None,
        now - dt.timedelta(days=least) if least is not None else None,
    )

    def read(conn: Connection, n: int, after: tuple[Any, ...] | None) -> list[dict[str, Any]]:
        rows = dashboard_reads.journeys_page(conn, where, n, after)
        for r in rows:
            r["age_days"] = round((now - r["started_at"]).total_seconds() / 86400, 1)
        return rows

    listing = Listing(
        "journeys", JOURNEYS, read, lambda r: (r["started_at"], r["decision_id"]), COLUMNS
    )
    specs = pages.library.specs
    render = partial(
        pages.list_page,
        request,
        "journeys.html",
        who,
        chosen={
            "status": status,
            "journey": journey,
            "step": step,
            "older": older,
            "younger": younger,
        },
        states=STATES,
        journey_ids=sorted(specs),
        steps=sorted({s.id for spec in specs.values() for s in spec.steps}),
        now=now,
    )
    return answer(pages, request, who, listing, (cursor, limit, format), render)

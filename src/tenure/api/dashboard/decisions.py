"""Decision pages: every decision, filtered (status, policy, mode, customer, a range of days)
and a page at a time; and one decision with its reason, the risk's explanation, every candidate
and its guardrail verdicts, and the journey and tasks it started.

(No `from __future__ import annotations` here: FastAPI reads the route annotations.)
"""

import datetime as dt
from functools import partial

from fastapi import Request
from fastapi.responses import Response

from tenure.api.dashboard.common import Pages, day_range, strongest_first, widest
from tenure.api.dashboard.lists import PAGE, Listing, answer
from tenure.api.paging import Keyset
from tenure.runtime.temporal import workflow_url
from tenure.services import policies as policy_registry
from tenure.store import acts, dashboard_reads, queries
from tenure.store.dashboard_reads import DecisionFilter

DECISIONS = Keyset("dashboard-decisions", (dt.datetime, str))
STATUSES = ("action", "none", "suppressed", "human")
MODES = ("live", "canary", "shadow")
COLUMNS = tuple(
    (name, lambda r, name=name: r[name])
    for name in (
        "decided_at",
        "decision_id",
        "customer_id",
        "status",
        "mode",
        "action_id",
        "channel",
        "guardrail",
        "reason",
        "policy_id",
        "policy_hash",
        "risk",
    )
)


def decisions(
    pages: Pages,
    request: Request,
    status: str = "",
    policy: str = "",
    mode: str = "",
    customer: str = "",
    since: str = "",
    until: str = "",
    cursor: str | None = None,
    limit: int = PAGE,
    format: str = "html",
) -> Response:
    """Decisions newest first, filtered, a page at a time."""
    who = pages.session(request)
    if isinstance(who, Response):
        return who
    try:
        start, end = day_range(since, until)
        if status not in ("", *STATUSES) or mode not in ("", *MODES):
            raise ValueError(
                f"status is one of {', '.join(STATUSES)}; mode one of {', '.join(MODES)}"
            )
    except ValueError as exc:
        return pages.message(request, who, 400, "Filter refused", str(exc))
    where = DecisionFilter(
        status or None, policy.strip() or None, mode or None, customer.strip() or None, start, end
    )
    listing = Listing(
        "decisions",
        DECISIONS,
        lambda conn, n, after: dashboard_reads.decisions_page(conn, where, n, after),
        lambda r: (r["decided_at"], r["decision_id"]),
        COLUMNS,
    )
    with pages.store.reader() as conn:
        policy_ids = sorted({v["policy_id"] for v in policy_registry.listing(conn)})
    render = partial(
        pages.list_page,
        request,
        "decisions.html",
        who,
        chosen={
            "status": status,
            "policy": policy.strip(),
            "mode": mode,
            "customer": customer.strip(),
            "since": since.strip(),
            "until": until.strip(),
        },
        statuses=STATUSES,
        modes=MODES,
        policy_ids=policy_ids,
    )
    return answer(pages, request, who, listing, (cursor, limit, format), render)


def decision(pages: Pages, request: Request, decision_id: str) -> Response:
    """A decision: the reason, the risk's explanation, every candidate and its verdict."""
    who = pages.session(request)
    if isinstance(who, Response):
        return who
    with pages.store.reader() as conn:
        record = queries.decision_record(conn, decision_id)
        journey = acts.journey(conn, decision_id)
        tasks = queries.decision_tasks(conn, decision_id) if record else []
    if record is None:
        return pages.message(
            request, who, 404, "No such decision", f"There is no decision {decision_id!r}."
        )
    explanation = strongest_first(record.get("explanation", []))
    return pages.page(
        request,
        "decision.html",
        who,
        d=record,
        explanation=explanation,
        widest=widest(explanation),
        journey=journey,
        tasks=tasks,
        temporal_url=workflow_url(decision_id) if journey else None,
    )

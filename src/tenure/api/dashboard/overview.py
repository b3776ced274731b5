"""The overview page: event rate, decisions, suppressions by guardrail, journeys by state, and
budget burn.

(No `from __future__ import annotations` here: FastAPI reads the route annotations.)
"""

from typing import Any

from fastapi import Request
from fastapi.responses import Response

from tenure.api import charts
from tenure.api.dashboard.common import Pages
from tenure.services import policies as policy_registry
from tenure.store import acts, dashboard_reads, queries
from tenure.store.db import Connection


def overview(pages: Pages, request: Request) -> Response:
    """Event rate, decisions, suppressions by reason, journeys by state, budget burn."""
    who = pages.session(request)
    if isinstance(who, Response):
        return who
    with pages.store.reader() as conn:
        stats = queries.stats(conn)
        events = queries.per_day(conn, "events")
        decided = queries.per_day(conn, "decisions")
        journeys = acts.journey_counts(conn)
        open_tasks = dashboard_reads.task_counts(conn).get("open", 0)
        budget = budget_burn(conn)
    suppressions = sorted(stats["suppressions_by_guardrail"].items(), key=lambda x: -x[1])
    return pages.page(
        request,
        "overview.html",
        who,
        stats=stats,
        open_tasks=open_tasks,
        events_chart=charts.columns(events, "events per day (event time)"),
        decisions_chart=charts.columns(decided, "decisions per day", "#7a5ab5"),
        events_days=events,
        suppressions_chart=charts.bars(suppressions, "suppressions by guardrail", "#c47a44"),
        journeys_chart=charts.bars(
            sorted(journeys["status"].items()), "journeys by state", "#2a8a6a"
        ),
        outcomes=sorted(journeys["outcome"].items()),
        budget=budget,
        budget_chart=charts.burn(
            [(f"{b['policy_id']} {b['period']}", b["spent"], b["amount"]) for b in budget],
            "budget reserved against each policy's budget",
        ),
    )


def budget_burn(conn: Connection, periods: int = 3) -> list[dict[str, Any]]:
    """Each live policy's reserved spend in its newest periods against its budget."""
    live = policy_registry.live_set(conn)
    amounts = {}
    for policy in (live.active, live.canary, *live.shadows):
        if policy is not None and policy.budget is not None:
            amounts.setdefault(policy.id, policy.budget.amount)
    out, seen = [], {}
    for r in dashboard_reads.budgets(conn):
        seen[r["policy_id"]] = seen.get(r["policy_id"], 0) + 1
        if seen[r["policy_id"]] <= periods:
            out.append({**r, "amount": amounts.get(r["policy_id"])})
    return out

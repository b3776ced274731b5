"""The policies page: registered versions, their lifecycle, and lift with 95% intervals.

(No `from __future__ import annotations` here: FastAPI reads the route annotations.)
"""

from typing import Any

from fastapi import Request
from fastapi.responses import Response
from markupsafe import Markup

from tenure.api import charts
from tenure.api.dashboard.common import Pages
from tenure.policy.lift import report as lift_report
from tenure.services import policies as policy_registry
from tenure.store import queries


def policies(pages: Pages, request: Request, window: float = 30.0) -> Response:
    """Registered versions, their lifecycle, and lift with 95% intervals."""
    who = pages.session(request)
    if isinstance(who, Response):
        return who
    window = min(max(window, 1.0), 365.0)
    with pages.store.reader() as conn:
        versions = policy_registry.listing(conn)
        transitions = queries.policy_transitions(conn, [v["policy_hash"] for v in versions])
        decided, cancels, observed, _ = queries.lift_inputs(conn)
    rows = lift_report(decided, cancels, observed, window) if observed else []
    lifecycle: dict[str, list[dict[str, Any]]] = {}
    for tr in transitions:
        lifecycle.setdefault(tr["version"], []).append(tr)
    return pages.page(
        request,
        "policies.html",
        who,
        versions=versions,
        lifecycle=lifecycle,
        rows=rows,
        window=window,
        observed=observed,
        lift_chart=lift_chart(rows) if rows else None,
    )


def lift_chart(rows: list[dict[str, Any]]) -> Markup:
    """Churn reduction per policy version and action, with its 95% interval."""
    return charts.intervals(
        [
            charts.Interval(
                f"{r['policy_id']} {r['policy_version'][:8]} · {r['action_id']}",
                r["lift"]["churn_reduction"],
                *(r["lift"]["ci95"] or (None, None)),
                note=(
                    f"n={r['treated']['known']} treated, {r['control']['known']} control"
                    if r["lift"]["churn_reduction"] is not None
                    else "no outcome with a control group yet"
                ),
            )
            for r in rows
        ],
        "churn reduction (treated vs control) with 95% intervals",
        unit="churn-rate points",
    )

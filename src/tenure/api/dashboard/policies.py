"""The policies page: registered versions, their lifecycle, lift with 95% intervals, and the
form that moves a version through its lifecycle.

A promotion from here is the registry's (`services.policies.promote`), with its four-eyes rule:
the signed-in token's holder is the `by`, so whoever wrote a version cannot make it decide for
real (canary, active) nor take it out of service while active, however many tokens they hold.
As on the API, a policy author may move versions to shadow or retire them; canary and active
take an approver (or admin). The serving process decides with the new live set at once.

(No `from __future__ import annotations` here: FastAPI reads the route annotations.)
"""

import datetime as dt
from typing import Annotated, Any

from fastapi import Form, Request
from fastapi.responses import RedirectResponse, Response
from markupsafe import Markup

from tenure.api import charts
from tenure.api.auth import Caller
from tenure.api.dashboard.common import POLICY, PREFIX, PROMOTE, READ, Pages
from tenure.api.dashboard.lists import PAGE, Listing, answer, held
from tenure.api.paging import Keyset
from tenure.errors import TenureError
from tenure.policy.lift import report as lift_report
from tenure.services import policies as policy_registry
from tenure.store import queries

VIEW = (*READ, *POLICY)
MOVES = ("shadow", "canary", "active", "retired")
AUTHOR_MOVES = ("shadow", "retired")
VERSIONS = Keyset("dashboard-policy-versions", (float, str))
VERSION_COLUMNS = tuple(
    (name, lambda r, name=name: r[name])
    for name in (
        "policy_hash",
        "policy_id",
        "label",
        "status",
        "canary_percent",
        "author",
        "approved_by",
        "registered_at",
        "changed_at",
        "lifecycle",
    )
)


def _key(row: dict[str, Any]) -> tuple[float, str]:
    """Newest registered first, then by hash (as the registry lists them)."""
    at = row["registered_at"]
    return (-at.timestamp() if at else 0.0, row["policy_hash"])


def policies_page(
    pages: Pages,
    request: Request,
    who: Caller,
    window: float = 30.0,
    notice: str | None = None,
    error: str | None = None,
    code: int = 200,
    paging: tuple[str | None, int, str] = (None, PAGE, "html"),
) -> Response:
    """Registered versions a page at a time (or as CSV), each with its lifecycle; lift with 95%
    intervals, and the promotion form."""
    window = min(max(window, 1.0), 365.0)
    with pages.store.reader() as conn:
        versions = policy_registry.listing(conn)
        transitions = queries.policy_transitions(conn, [v["policy_hash"] for v in versions])
        decided, cancels, observed, _ = queries.lift_inputs(conn)
    lifecycle: dict[str, list[dict[str, Any]]] = {}
    for tr in transitions:
        lifecycle.setdefault(tr["version"], []).append(tr)
    for v in versions:
        v["lifecycle"] = lifecycle.get(v["policy_hash"], [])
    listing = Listing("policy-versions", VERSIONS, held(versions, _key), _key, VERSION_COLUMNS)
    rows = lift_report(decided, cancels, observed, window) if observed else []

    def render(shown: Any) -> Response:
        return pages.page(
            request,
            "policies.html",
            who,
            code,
            shown=shown,
            rows=rows,
            window=window,
            observed=observed,
            lift_chart=lift_chart(rows) if rows else None,
            moves=AUTHOR_MOVES if who.role == "policy-author" else MOVES,
            notice=notice,
            error=error,
        )

    # A promotion's error page is shown at the form's address: its links are the list's own.
    where = None if request.method == "GET" else f"{PREFIX}/policies"
    return answer(pages, request, who, listing, paging, render, where)


def policies(
    pages: Pages,
    request: Request,
    window: float = 30.0,
    promoted: str | None = None,
    cursor: str | None = None,
    limit: int = PAGE,
    format: str = "html",
) -> Response:
    """Registered versions and their lifecycle, a page at a time, and lift with 95% intervals."""
    who = pages.session(request, VIEW)
    if isinstance(who, Response):
        return who
    notice = (
        f"Version {promoted[:12]} moved; the service decides with it now." if promoted else None
    )
    return policies_page(pages, request, who, window, notice, paging=(cursor, limit, format))


def promote(
    pages: Pages,
    request: Request,
    version: Annotated[str, Form()],
    to: Annotated[str, Form()],
    percent: Annotated[str, Form()] = "",
    csrf: Annotated[str, Form()] = "",
) -> Response:
    """Move a version to shadow, canary, active or retired, as the signed-in person."""
    who = pages.form_session(request, csrf, PROMOTE)
    if isinstance(who, Response):
        return who
    try:
        share = float(percent) if percent.strip() else None
        if who.role == "policy-author" and to not in AUTHOR_MOVES:
            raise TenureError(f"going {to} needs an approver's token")
        with pages.store.transaction() as conn:
            if who.role == "policy-author" and to == "retired":
                current = {r["policy_hash"]: r["status"] for r in policy_registry.listing(conn)}
                if any(v.startswith(version) and s == "active" for v, s in current.items()):
                    raise TenureError("retiring the active version needs an approver's token")
            plan = policy_registry.promote(
                conn, version, to, who.name, share, dt.datetime.now(dt.UTC)
            )
    except ValueError:
        return policies_page(pages, request, who, error="percent is a number", code=422)
    except TenureError as exc:
        return policies_page(pages, request, who, error=str(exc), code=409)
    service = getattr(request.app.state, "service", None)
    if service is not None:  # the serving process decides with the new live set from now on
        service.reload_policies()
    return RedirectResponse(f"{PREFIX}/policies?promoted={plan.version}", status_code=303)


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

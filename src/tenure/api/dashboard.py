"""The dashboard: server-rendered pages for people, served by the API app under `/dashboard`.

Overview, customers (timeline, risk and why, decisions, journeys, ledger), one decision with its
explanation, policies (versions, lifecycle, lift with 95% intervals), partners (settlement and
reconciliation) and the human task queue. Pages read through the same functions as the CLI and
the JSON API; the one write, resolving a task, goes through `runtime.journeys.resolve_task`.

Sign-in: an API token is posted once to the login page and kept in an HttpOnly, SameSite=Strict
cookie; every page looks the token up again (a revoked token is out at once) and checks its role.
Forms carry a CSRF token derived from the session's token (HMAC), so a form can only come from a
page this session was shown. No scripts: charts are SVG drawn here, CSS is inline.

(No `from __future__ import annotations` here: FastAPI reads the route annotations.)
"""

import datetime as dt
import hashlib
import hmac
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import jinja2
from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from sqlalchemy import Connection, func, select

from tenure.api import charts
from tenure.api.auth import Caller, caller
from tenure.config import Settings
from tenure.errors import TenureError
from tenure.journeys.library import JourneyLibrary
from tenure.journeys.spec import Human
from tenure.loyalty.contracts import Contract
from tenure.loyalty.ledger import member_account
from tenure.loyalty.partners import parse_statement, reconcile
from tenure.policy.lift import report as lift_report
from tenure.runtime import policies as policy_registry
from tenure.runtime.journeys import resolve_task
from tenure.runtime.loyalty import adjustments, funded_points, settlement
from tenure.runtime.temporal import workflow_url
from tenure.runtime.views import customer_view
from tenure.scoring.types import Scorer
from tenure.store import acts, ledger, queries, repo
from tenure.store import schema as t
from tenure.store.db import Store

PREFIX = "/dashboard"
COOKIE = "tenure_dashboard"
READ = ("admin", "operator", "auditor")
RESOLVE = ("admin", "operator")
TEMPLATES = Path(__file__).parent / "templates"
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
TIMELINE_EVENTS = 100
SEARCH_LIMIT = 50


def csrf_token(session_token: str) -> str:
    """The form token of a session: only someone holding the session's token can compute it."""
    return hmac.new(session_token.encode(), b"tenure dashboard form", hashlib.sha256).hexdigest()


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


def _environment() -> jinja2.Environment:
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


def _strongest_first(contributions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Feature contributions, the strongest (either way) first."""
    return sorted(contributions, key=lambda c: -abs(c["weight"]))


def _widest(contributions: list[dict[str, Any]]) -> float:
    """The scale of a contribution bar chart."""
    return max((abs(c["weight"]) for c in contributions), default=0.0) or 1.0


def router(
    store: Store,
    settings: Settings,
    scorer: Scorer,
    contracts: Sequence[Contract],
    library: JourneyLibrary,
) -> APIRouter:
    """The dashboard's routes for one workspace (the app's store, scorer, contracts and journey
    library, loaded once by the service)."""
    templates = Jinja2Templates(env=_environment())
    api = APIRouter(prefix=PREFIX, include_in_schema=False)

    def page(
        request: Request, name: str, who: Caller | None, code: int = 200, **context: Any
    ) -> HTMLResponse:
        token = request.cookies.get(COOKIE, "")
        response = templates.TemplateResponse(
            request,
            name,
            {
                "who": who,
                "csrf": csrf_token(token) if who else "",
                "prefix": PREFIX,
                "may_resolve": who is not None and who.role in RESOLVE,
                **context,
            },
            status_code=code,
        )
        response.headers.update(HEADERS)
        return response

    def session(request: Request, roles: Sequence[str] = READ) -> Caller | Response:
        """The signed-in caller, or the response to send instead (to login, or forbidden)."""
        token = request.cookies.get(COOKIE)
        who = None
        if token:
            with store.reader() as conn:
                who = caller(conn, token)
        if who is None:
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            response = RedirectResponse(f"{PREFIX}/login?next={quote(target)}", status_code=303)
            if token:
                response.delete_cookie(COOKIE, path=PREFIX)
            return response
        if who.role not in roles:
            return page(
                request,
                "message.html",
                who,
                403,
                title="Not allowed",
                message=f"Role {who.role!r} may not open this page "
                f"(it needs one of: {', '.join(roles)}).",
            )
        return who

    def form_ok(request: Request, csrf: str) -> bool:
        token = request.cookies.get(COOKIE, "")
        return bool(token) and hmac.compare_digest(csrf, csrf_token(token))

    def refused_form(request: Request, who: Caller) -> HTMLResponse:
        return page(
            request,
            "message.html",
            who,
            403,
            title="Form refused",
            message="This form did not come from a page of this session; open the page again.",
        )

    # ------------------------------------------------------------ sign-in

    def _next(value: str | None) -> str:
        # Only back into the dashboard: never an open redirect to another site.
        if value and value.startswith(PREFIX) and not value.startswith("//"):
            return value
        return PREFIX

    @api.get("/login")
    def login_form(request: Request, next: str | None = None) -> HTMLResponse:
        """The sign-in page."""
        return page(request, "login.html", None, next=_next(next), error=None)

    @api.post("/login")
    def login(
        request: Request, token: Annotated[str, Form()], next: Annotated[str, Form()] = PREFIX
    ) -> Response:
        """Check a token and keep it in the session cookie."""
        with store.reader() as conn:
            who = caller(conn, token.strip())
        if who is None or who.role not in READ:
            error = (
                "Unknown or revoked token."
                if who is None
                else f"Role {who.role!r} cannot use the dashboard (operator, auditor or admin)."
            )
            return page(
                request,
                "login.html",
                None,
                401 if who is None else 403,
                next=_next(next),
                error=error,
            )
        response = RedirectResponse(_next(next), status_code=303)
        response.set_cookie(
            COOKIE,
            token.strip(),
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
            path=PREFIX,
        )
        return response

    @api.post("/logout")
    def logout(request: Request, csrf: Annotated[str, Form()] = "") -> Response:
        """Forget the session."""
        who = session(request, READ)
        if isinstance(who, Response):
            return who
        if not form_ok(request, csrf):
            return refused_form(request, who)
        response = RedirectResponse(f"{PREFIX}/login", status_code=303)
        response.delete_cookie(COOKIE, path=PREFIX)
        return response

    # ------------------------------------------------------------ overview

    @api.get("")
    def overview(request: Request) -> Response:
        """Event rate, decisions, suppressions by reason, journeys by state, budget burn."""
        who = session(request)
        if isinstance(who, Response):
            return who
        with store.reader() as conn:
            stats = queries.stats(conn)
            events = queries.per_day(conn, "events")
            decided = queries.per_day(conn, "decisions")
            journeys = acts.journey_counts(conn)
            open_tasks = repo.count(conn, t.tasks, t.tasks.c.status == "open")
            budget = _budget_burn(conn)
        suppressions = sorted(stats["suppressions_by_guardrail"].items(), key=lambda x: -x[1])
        return page(
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

    # ------------------------------------------------------------ customers

    @api.get("/customers")
    def customers(request: Request, q: str = "") -> Response:
        """Customers whose id starts with `q`."""
        who = session(request)
        if isinstance(who, Response):
            return who
        prefix = q.strip()
        with store.reader() as conn:
            found = queries.customers_by_prefix(conn, prefix, SEARCH_LIMIT + 1)
        return page(
            request,
            "customers.html",
            who,
            q=prefix,
            found=found[:SEARCH_LIMIT],
            more=len(found) > SEARCH_LIMIT,
        )

    @api.get("/customers/{customer_id:path}")
    def customer(request: Request, customer_id: str) -> Response:
        """One customer: risk and why, decisions, journeys, ledger and event timeline."""
        who = session(request)
        if isinstance(who, Response):
            return who
        with store.reader() as conn:
            view = customer_view(conn, customer_id, scorer=scorer)
            if view is None:
                return page(
                    request,
                    "message.html",
                    who,
                    404,
                    title="No such customer",
                    message=f"The workspace has never seen customer {customer_id!r}.",
                )
            events = queries.customer_events(conn, customer_id, TIMELINE_EVENTS)
            account = member_account(view["loyalty"]["programme"], customer_id)
            transfers = ledger.history(conn, account, 50)
            journeys = [acts.journey(conn, j["decision_id"]) or j for j in view["journeys"]]
        contributions = _strongest_first(view["score"]["contributions"])
        return page(
            request,
            "customer.html",
            who,
            view=view,
            contributions=contributions,
            widest=_widest(contributions),
            events=events,
            journeys=journeys,
            account=account,
            transfers=transfers,
        )

    # ------------------------------------------------------------ decisions

    @api.get("/decisions/{decision_id:path}")
    def decision(request: Request, decision_id: str) -> Response:
        """A decision: the reason, the risk's explanation, every candidate and its verdict."""
        who = session(request)
        if isinstance(who, Response):
            return who
        with store.reader() as conn:
            record = queries.decision_record(conn, decision_id)
            journey = acts.journey(conn, decision_id)
            tasks = queries.decision_tasks(conn, decision_id) if record else []
        if record is None:
            return page(
                request,
                "message.html",
                who,
                404,
                title="No such decision",
                message=f"There is no decision {decision_id!r}.",
            )
        explanation = _strongest_first(record.get("explanation", []))
        return page(
            request,
            "decision.html",
            who,
            d=record,
            explanation=explanation,
            widest=_widest(explanation),
            journey=journey,
            tasks=tasks,
            temporal_url=workflow_url(decision_id) if journey else None,
        )

    # ------------------------------------------------------------ policies

    @api.get("/policies")
    def policies(request: Request, window: float = 30.0) -> Response:
        """Registered versions, their lifecycle, and lift with 95% intervals."""
        who = session(request)
        if isinstance(who, Response):
            return who
        window = min(max(window, 1.0), 365.0)
        with store.reader() as conn:
            versions = policy_registry.listing(conn)
            transitions = queries.policy_transitions(conn, [v["policy_hash"] for v in versions])
            decided, cancels, observed, _ = queries.lift_inputs(conn)
        rows = lift_report(decided, cancels, observed, window) if observed else []
        lifecycle: dict[str, list[dict[str, Any]]] = {}
        for tr in transitions:
            lifecycle.setdefault(tr["version"], []).append(tr)
        chart = charts.intervals(
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
        return page(
            request,
            "policies.html",
            who,
            versions=versions,
            lifecycle=lifecycle,
            rows=rows,
            window=window,
            observed=observed,
            lift_chart=chart if rows else None,
        )

    # ------------------------------------------------------------ partners

    def partners_page(
        request: Request,
        who: Caller,
        period: str | None,
        result: dict[str, Any] | None = None,
        status: int = 200,
    ) -> HTMLResponse:
        with store.reader() as conn:
            chosen = period if period and _is_period(period) else _latest_period(conn)
            owed = settlement(conn, contracts, chosen)
            names = sorted({p for c in contracts for p in (c.oem, *c.dealers)})
            funded = {p: funded_points(conn, p, chosen) for p in names}
            adjusted = adjustments(conn)
        return page(
            request,
            "partners.html",
            who,
            status,
            period=chosen,
            bad_period=bool(period) and period != chosen,
            contracts=contracts,
            owed=owed,
            funded=[(p, len(refs), sum(refs.values())) for p, refs in funded.items()],
            adjustments=adjusted,
            partners=names,
            result=result,
        )

    @api.get("/partners")
    def partners(request: Request, period: str | None = None) -> Response:
        """Settlement per funder for a month, funded points per partner, adjustments."""
        who = session(request)
        if isinstance(who, Response):
            return who
        return partners_page(request, who, period)

    @api.post("/partners/reconcile")
    def partners_reconcile(
        request: Request,
        partner: Annotated[str, Form()],
        period: Annotated[str, Form()],
        statement: Annotated[str, Form()],
        csrf: Annotated[str, Form()] = "",
    ) -> Response:
        """A partner's statement (CSV: reference, points) against the ledger for a month."""
        who = session(request)
        if isinstance(who, Response):
            return who
        if not form_ok(request, csrf):
            return refused_form(request, who)
        if not _is_period(period):
            result = {
                "partner": partner,
                "error": f"period must look like 2026-03, not {period!r}",
                "report": None,
            }
            return partners_page(request, who, None, result, 422)
        try:
            lines = parse_statement(statement, "statement")
        except TenureError as exc:
            return partners_page(
                request, who, period, {"partner": partner, "error": str(exc), "report": None}, 422
            )
        with store.reader() as conn:
            funded = funded_points(conn, partner, period)
        return partners_page(
            request,
            who,
            period,
            {
                "partner": partner,
                "error": None,
                "report": reconcile(partner, period, lines, funded),
            },
        )

    # ------------------------------------------------------------ tasks

    def resolutions(task: dict[str, Any], journey_ids: dict[str, str]) -> list[str]:
        """The resolutions the waiting journey step knows (empty: any text)."""
        parts = task["task_id"].rsplit(":", 2)  # <decision_id>:<step_id>:<visit>
        step_id = parts[1] if len(parts) == 3 else ""
        journey_id = journey_ids.get(task["decision_id"])
        spec = library.specs.get(journey_id or "")
        step = next((s for s in spec.steps if s.id == step_id), None) if spec else None
        return sorted(step.on) if isinstance(step, Human) else []

    def tasks_page(
        request: Request,
        who: Caller,
        status: str,
        queue: str | None,
        notice: str | None = None,
        error: str | None = None,
        code: int = 200,
    ) -> HTMLResponse:
        chosen = status if status in ("open", "resolved", "expired", "all") else "open"
        with store.reader() as conn:
            rows = acts.tasks(conn, None if chosen == "all" else chosen, queue or None, 200)
            j = t.journeys.c
            ids = list({r["decision_id"] for r in rows})
            journey_ids = (
                dict(
                    conn.execute(
                        select(j.decision_id, j.journey_id).where(j.decision_id.in_(ids))
                    ).all()
                )
                if ids
                else {}
            )
            queues = sorted(conn.execute(select(t.tasks.c.queue).distinct()).scalars())
            counts = dict(
                conn.execute(
                    select(t.tasks.c.status, func.count()).group_by(t.tasks.c.status)
                ).all()
            )
        return page(
            request,
            "tasks.html",
            who,
            code,
            tasks=[{**r, "choices": resolutions(r, journey_ids)} for r in rows],
            status=chosen,
            queue=queue or "",
            queues=queues,
            counts=counts,
            notice=notice,
            error=error,
        )

    @api.get("/tasks")
    def tasks(
        request: Request,
        status: str = "open",
        queue: str | None = None,
        resolved: str | None = None,
    ) -> Response:
        """The human task queue."""
        who = session(request)
        if isinstance(who, Response):
            return who
        notice = f"Resolved {resolved}; its journey continues." if resolved else None
        return tasks_page(request, who, status, queue, notice)

    @api.post("/tasks/resolve")
    def resolve(
        request: Request,
        task_id: Annotated[str, Form()],
        resolution: Annotated[str, Form()],
        by: Annotated[str, Form()],
        csrf: Annotated[str, Form()] = "",
    ) -> Response:
        """Resolve a task; the journey waiting on it hears of it through the outbox."""
        who = session(request, RESOLVE)
        if isinstance(who, Response):
            return who
        if not form_ok(request, csrf):
            return refused_form(request, who)
        # The name typed, and the token that signed in: a name alone could be anyone's.
        name = by.strip()[:60]
        try:
            resolve_task(
                store, task_id, resolution.strip(), name and f"{name} ({who.token_id})", time.time()
            )
        except TenureError as exc:
            return tasks_page(request, who, "open", None, error=str(exc), code=409)
        return RedirectResponse(f"{PREFIX}/tasks?resolved={quote(task_id)}", status_code=303)

    return api


def _is_period(value: str) -> bool:
    try:
        dt.datetime.strptime(value, "%Y-%m")
    except ValueError:
        return False
    return True


def _latest_period(conn: Connection) -> str:
    """The month of the newest accrual (event time), or of today when there is none."""
    newest = conn.execute(select(func.max(t.loyalty_accruals.c.occurred_at))).scalar()
    return f"{newest or dt.datetime.now(dt.UTC):%Y-%m}"


def _budget_burn(conn: Connection, periods: int = 3) -> list[dict[str, Any]]:
    """Each live policy's reserved spend in its newest periods against its budget."""
    live = policy_registry.live_set(conn)
    amounts = {}
    for policy in (live.active, live.canary, *live.shadows):
        if policy is not None and policy.budget is not None:
            amounts.setdefault(policy.id, policy.budget.amount)
    b = t.budgets.c
    rows = repo.rows(conn, select(t.budgets).order_by(b.policy_id, b.period.desc()))
    out, seen = [], {}
    for r in rows:
        seen[r["policy_id"]] = seen.get(r["policy_id"], 0) + 1
        if seen[r["policy_id"]] <= periods:
            out.append({**r, "amount": amounts.get(r["policy_id"])})
    return out

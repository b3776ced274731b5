"""The dashboard: server-rendered pages for people, served by the API app under `/dashboard`.

Overview; customers most worth saving now (risk x value, by segment, tier, partner); customers
(timeline, risk and why, decisions, journeys, ledger); decisions (by status, policy, mode,
customer and days) and one decision with its explanation; journeys (by state, journey, step,
age); dead letters and channel circuits; policies (versions, lifecycle, lift with 95% intervals,
promotion); models (versions, backtest figures, reliability, drift, promotion); partners
(settlement and reconciliation) and the human task queue, one module per page. Every list pages
by keyset cursor and exports as CSV (`lists.py`). Pages read through the same functions as the
CLI and the JSON API; the writes go through the same use cases: resolving a task
(`services.tasks.resolve_task`), retrying a dead letter (the courier's `retry_dead`), promoting a
policy (`services.policies.promote`, four eyes included) or a model (`services.models.promote`).

Sign-in: an API token is posted once to the login page (the form itself CSRF-protected by a
double submit) and exchanged for a new server-side session; the HttpOnly, SameSite=Strict cookie
(Secure over https) holds only the session's random id. Every page looks the session up again:
sign-out, a revoked or expired token, 30 idle minutes or 12 hours end it at once; then the role
is checked. Forms carry a CSRF token derived from the session id (HMAC), so a form can only come
from a page this session was shown. No scripts: charts are SVG drawn here, CSS is inline.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

from fastapi import APIRouter
from fastapi.templating import Jinja2Templates

from tenure.api.dashboard import (
    customers,
    decisions,
    deliveries,
    journeys,
    models,
    overview,
    partners,
    policies,
    saving,
    signin,
    tasks,
)
from tenure.api.dashboard.common import COOKIE, PREFIX, Pages, csrf_token, environment
from tenure.config import Settings
from tenure.journeys.library import JourneyLibrary
from tenure.loyalty.contracts import Contract
from tenure.scoring.types import Scorer
from tenure.store.db import Store

__all__ = ["COOKIE", "csrf_token", "router"]

# Matched in this order: a route listed earlier wins.
ROUTES: tuple[tuple[str, str, Callable[..., Any]], ...] = (
    ("/login", "GET", signin.login_form),
    ("/login", "POST", signin.login),
    ("/logout", "POST", signin.logout),
    ("", "GET", overview.overview),
    ("/saving", "GET", saving.saving),
    ("/customers", "GET", customers.customers),
    ("/customers/{customer_id:path}", "GET", customers.customer),
    ("/events", "GET", customers.events),
    ("/decisions", "GET", decisions.decisions),
    ("/decisions/{decision_id:path}", "GET", decisions.decision),
    ("/journeys", "GET", journeys.journeys),
    ("/deliveries", "GET", deliveries.deliveries),
    ("/deliveries/retry", "POST", deliveries.retry),
    ("/policies", "GET", policies.policies),
    ("/policies/promote", "POST", policies.promote),
    ("/models", "GET", models.models),
    ("/models/promote", "POST", models.promote),
    ("/partners", "GET", partners.partners),
    ("/partners/reconcile", "POST", partners.partners_reconcile),
    ("/tasks", "GET", tasks.tasks),
    ("/tasks/resolve", "POST", tasks.resolve),
)


def router(
    store: Store,
    settings: Settings,
    scorer: Scorer,
    contracts: Sequence[Contract],
    library: JourneyLibrary,
) -> APIRouter:
    """The dashboard's routes for one workspace (the app's store, scorer, contracts and journey
    library, loaded once by the service; no page reads `settings`: the courier that retries
    dead letters is built from its channels here)."""
    courier = deliveries.trial_courier(store, settings.workspace, settings.channels)
    pages = Pages(store, scorer, contracts, library, Jinja2Templates(env=environment()), courier)
    api = APIRouter(prefix=PREFIX, include_in_schema=False)
    for path, method, handler in ROUTES:
        # Bound with partial rather than nested in here, so each page stays a top-level
        # function that can be read (and called) on its own.
        api.add_api_route(path, partial(handler, pages), methods=[method], name=handler.__name__)
    return api

"""The models page: registered churn and value models (versions, status, training window), their
backtest figures (out-of-fold AUC and Brier over rolling point-in-time cut-offs, as `tenure model
train` measured them), the reliability of their probabilities, drift on demand, and promotion.

Drift is `services.models.drift` (PSI of each feature and of the score against the model's
training reference), on the recently active customers of the window the worth-saving page scores
(the `saving.SCAN` most recently seen): bounded, where `tenure model drift` reads every customer.
Promoting is `services.models.promote` (admin only: the registry has no four-eyes rule for
models); the serving process scores and decides with the new model at once.

(No `from __future__ import annotations` here: FastAPI reads the route annotations.)
"""

import datetime as dt
from functools import partial
from typing import Annotated, Any

from fastapi import Form, Request
from fastapi.responses import RedirectResponse, Response

from tenure.api import charts
from tenure.api.auth import Caller
from tenure.api.dashboard.common import PREFIX, Pages
from tenure.api.dashboard.lists import PAGE, Listing, answer, held
from tenure.api.dashboard.saving import PROGRAMME, SCAN
from tenure.api.paging import Keyset
from tenure.errors import TenureError
from tenure.features.snapshot import snapshot
from tenure.services import models as registry
from tenure.store import dashboard_reads, queries, repo
from tenure.store.db import Connection

MODELS = Keyset("dashboard-models", (float, str))
PROMOTE_MODEL = ("admin",)
THRESHOLD = 0.2  # PSI above which a feature is flagged (the CLI's default)
COLUMNS = (
    ("version", lambda r: r["version"]),
    ("status", lambda r: r["status"]),
    ("algorithm", lambda r: r["algorithm"]),
    ("created_at", lambda r: r["created_at"]),
    *(
        (name, lambda r, name=name: r["metrics"].get(name))
        for name in ("examples", "customers", "churn_rate", "auc", "brier")
    ),
    ("first_event", lambda r: r["training_window"].get("first_event")),
    ("last_event", lambda r: r["training_window"].get("last_event")),
    ("horizon_days", lambda r: r["training_window"].get("horizon_days")),
    ("churn", lambda r: r["training_window"].get("churn")),
)


def _key(row: dict[str, Any]) -> tuple[float, str]:
    return (-row["created_at"].timestamp(), row["version"])


def drift_rows(conn: Connection, version: str) -> tuple[str, int, list[dict[str, Any]]]:
    """(version compared, customers compared, PSI per feature) for the recent window."""
    ids = dashboard_reads.recent_customers(conn, SCAN, PROGRAMME)
    states = [state for state, _ in queries.current_states(conn, ids).values()]
    as_of = queries.event_time(conn) or dt.datetime.now(dt.UTC)
    recent = registry.recent_window([snapshot(s, as_of) for s in states], as_of)
    if not recent:
        raise TenureError("no customer was active in the recent window: nothing to compare")
    used, rows = registry.drift(conn, recent, version, THRESHOLD)
    return used, len(recent), rows


def reliability_chart(model: dict[str, Any] | None) -> Any:
    """Predicted against observed churn per probability bin, of one model."""
    bins = (model or {}).get("metrics", {}).get("reliability") or []
    if not bins:
        return None
    return charts.reliability(
        [(b["bin"], b["predicted"], b["observed"], b["customers"]) for b in bins],
        f"reliability of {model['version'] if model else ''}: predicted against observed churn",
    )


def _drift(pages: Pages, version: str) -> dict[str, Any]:
    """The drift section's content: the figures, or why there are none."""
    try:
        with pages.store.reader() as conn:
            used, customers, rows = drift_rows(conn, version)
    except TenureError as exc:
        return {"version": version, "error": str(exc)}
    return {
        "version": used,
        "customers": customers,
        "rows": rows,
        "threshold": THRESHOLD,
        "error": None,
    }


def models(
    pages: Pages,
    request: Request,
    drift: str = "",
    promoted: str = "",
    cursor: str | None = None,
    limit: int = PAGE,
    format: str = "html",
) -> Response:
    """Registered models, their backtest figures and reliability, drift on demand."""
    who = pages.session(request)
    if isinstance(who, Response):
        return who
    return models_page(pages, request, who, drift, promoted, (cursor, limit, format))


def models_page(
    pages: Pages,
    request: Request,
    who: Caller,
    drift: str,
    promoted: str,
    paging: tuple[str | None, int, str],
    error: str | None = None,
) -> Response:
    """The models page, with the drift of `drift` when asked for."""
    with pages.store.reader() as conn:
        rows = repo.models(conn)
    chosen = next((r for r in rows if r["status"] == "active"), rows[0] if rows else None)
    listing = Listing("models", MODELS, held(rows, _key), _key, COLUMNS)
    render = partial(
        pages.list_page,
        request,
        "models.html",
        who,
        chosen=chosen,
        reliability_chart=reliability_chart(chosen),
        drift=_drift(pages, drift) if drift else None,
        notice=f"{promoted[:40]} is the active model now." if promoted else None,
        error=error,
        may_promote_model=who.role in PROMOTE_MODEL,
    )
    # Links from the list's own page, also on the page a failed promotion answers with.
    return answer(pages, request, who, listing, paging, render, f"{PREFIX}/models")


def promote(
    pages: Pages,
    request: Request,
    version: Annotated[str, Form()],
    csrf: Annotated[str, Form()] = "",
) -> Response:
    """Make a registered model the one the service scores with (the previous one retires)."""
    who = pages.form_session(request, csrf, PROMOTE_MODEL)
    if isinstance(who, Response):
        return who
    try:
        with pages.store.transaction() as conn:
            registry.promote(conn, version)
    except TenureError as exc:
        response = models_page(pages, request, who, "", "", (None, PAGE, "html"), str(exc))
        response.status_code = 409
        return response
    service = getattr(request.app.state, "service", None)
    if service is not None:  # the serving process scores and decides with it from now on
        service.reload_policies()
    return RedirectResponse(f"{PREFIX}/models?promoted={version}", status_code=303)

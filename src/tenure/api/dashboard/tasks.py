"""The human task queue: tasks by status and queue, oldest first, a page at a time (and as CSV),
and the form an operator (or admin) resolves one with, after which the waiting journey continues.

(No `from __future__ import annotations` here: FastAPI reads the route annotations.)
"""

import datetime as dt
import time
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from tenure.api.auth import Caller
from tenure.api.dashboard.common import PREFIX, RESOLVE, Pages
from tenure.api.dashboard.lists import PAGE, Listing, Shown, answer, page_of
from tenure.api.paging import Keyset
from tenure.errors import TenureError
from tenure.journeys.library import JourneyLibrary
from tenure.journeys.spec import Human
from tenure.services.tasks import resolve_task
from tenure.store import dashboard_reads, service_reads

STATUSES = ("open", "resolved", "expired", "all")
TASKS = Keyset("dashboard-tasks", (dt.datetime, str))
COLUMNS = tuple(
    (name, lambda r, name=name: r[name])
    for name in (
        "created_at",
        "task_id",
        "decision_id",
        "customer_id",
        "queue",
        "reason",
        "status",
        "due_at",
        "resolution",
        "resolved_by",
        "resolved_at",
    )
)


def resolutions(
    library: JourneyLibrary, task: dict[str, Any], journey_ids: dict[str, str]
) -> list[str]:
    """The resolutions the waiting journey step knows (empty: any text)."""
    parts = task["task_id"].rsplit(":", 2)  # <decision_id>:<step_id>:<visit>
    step_id = parts[1] if len(parts) == 3 else ""
    journey_id = journey_ids.get(task["decision_id"])
    spec = library.specs.get(journey_id or "")
    step = next((s for s in spec.steps if s.id == step_id), None) if spec else None
    return sorted(step.on) if isinstance(step, Human) else []


def listing(status: str, queue: str | None) -> Listing:
    """The tasks of one status (or all) and queue, oldest first."""
    chosen = None if status == "all" else status
    return Listing(
        "tasks",
        TASKS,
        lambda conn, n, after: service_reads.tasks_page(conn, n, after, chosen, queue),
        lambda r: (r["created_at"], r["task_id"]),
        COLUMNS,
    )


def tasks_page(
    pages: Pages,
    request: Request,
    who: Caller,
    shown: Shown,
    status: str,
    queue: str | None,
    notice: str | None = None,
    error: str | None = None,
    code: int = 200,
) -> HTMLResponse:
    """The queue's page for one status and queue, showing one page of its tasks."""
    with pages.store.reader() as conn:
        journey_ids = dashboard_reads.journey_ids(
            conn, list({r["decision_id"] for r in shown.rows})
        )
        queues = dashboard_reads.task_queues(conn)
        counts = dashboard_reads.task_counts(conn)
    rows = [{**r, "choices": resolutions(pages.library, r, journey_ids)} for r in shown.rows]
    return pages.page(
        request,
        "tasks.html",
        who,
        code,
        tasks=rows,
        shown=shown,
        status=status,
        queue=queue or "",
        queues=queues,
        counts=counts,
        notice=notice,
        error=error,
    )


def tasks(
    pages: Pages,
    request: Request,
    status: str = "open",
    queue: str | None = None,
    resolved: str | None = None,
    cursor: str | None = None,
    limit: int = PAGE,
    format: str = "html",
) -> Response:
    """The human task queue (open unless a known status is asked for)."""
    who = pages.session(request)
    if isinstance(who, Response):
        return who
    chosen = status if status in STATUSES else "open"
    notice = f"Resolved {resolved}; its journey continues." if resolved else None

    def render(shown: Shown) -> Response:
        return tasks_page(pages, request, who, shown, chosen, queue, notice)

    found = listing(chosen, queue or None)
    return answer(pages, request, who, found, (cursor, limit, format), render)


def resolve(
    pages: Pages,
    request: Request,
    task_id: Annotated[str, Form()],
    resolution: Annotated[str, Form()],
    by: Annotated[str, Form()],
    csrf: Annotated[str, Form()] = "",
) -> Response:
    """Resolve a task; the journey waiting on it hears of it through the outbox."""
    who = pages.form_session(request, csrf, RESOLVE)
    if isinstance(who, Response):
        return who
    # The name typed, and the token that signed in: a name alone could be anyone's.
    name = by.strip()[:60]
    try:
        resolve_task(
            pages.store,
            task_id,
            resolution.strip(),
            name and f"{name} ({who.token_id})",
            time.time(),
        )
    except TenureError as exc:
        where = f"{PREFIX}/tasks?{urlencode({'status': 'open'})}"
        shown = page_of(pages, request, listing("open", None), None, PAGE, where)
        return tasks_page(pages, request, who, shown, "open", None, error=str(exc), code=409)
    return RedirectResponse(f"{PREFIX}/tasks?resolved={quote(task_id)}", status_code=303)

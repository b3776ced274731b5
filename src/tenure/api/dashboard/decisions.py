"""The decision page: the reason, the risk's explanation, every candidate and its guardrail
verdicts, and the journey and tasks it started.

(No `from __future__ import annotations` here: FastAPI reads the route annotations.)
"""

from fastapi import Request
from fastapi.responses import Response

from tenure.api.dashboard.common import Pages, strongest_first, widest
from tenure.runtime.temporal import workflow_url
from tenure.store import acts, queries


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

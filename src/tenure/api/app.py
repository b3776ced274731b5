"""The HTTP service (FastAPI): events in, decisions back, customers, health and metrics.

Every path is versioned (`/v1/...`) except the probes; every error is `application/problem+json`
(RFC 9457) with the field or reason named; every call but the probes and `/metrics` needs a
bearer token whose role allows it. One pipeline per process decides; a lock keeps its batches
one at a time (the pipeline's caches are not shared between threads).

(No `from __future__ import annotations` here: FastAPI reads the dependency annotations.)
"""

from typing import Annotated, Any

import orjson
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import select

from tenure import __version__
from tenure.api import dashboard, operations, policies
from tenure.api import loyalty as loyalty_routes
from tenure.api.auth import Caller
from tenure.api.personal import mask_view
from tenure.api.service import MAX_EVENTS, Service, problem
from tenure.config import Settings
from tenure.errors import TenureError
from tenure.observe.http import instrument
from tenure.runtime.personal import erase
from tenure.runtime.views import customer_view
from tenure.store import queries


def create_app(settings: Settings) -> FastAPI:
    """The app for one workspace."""
    svc = Service(settings)
    store, metrics = svc.store, svc.metrics
    app = FastAPI(
        title="tenure",
        version=__version__,
        description="Events in, governed and audited retention and loyalty actions out.",
    )
    app.state.store = store
    app.state.service = svc
    instrument(app, store, metrics, settings.channels)
    app.include_router(dashboard.router(store, settings, svc.scorer, svc.contracts, svc.journeys))

    @app.exception_handler(HTTPException)
    async def _http(_: Request, exc: HTTPException) -> JSONResponse:
        titles = {
            400: "Bad Request",
            401: "Unauthorized",
            403: "Forbidden",
            404: "Not Found",
            409: "Conflict",
            413: "Too Large",
        }
        response = problem(exc.status_code, titles.get(exc.status_code, "Error"), str(exc.detail))
        if exc.status_code == 401:
            response.headers["WWW-Authenticate"] = "Bearer"
        return response

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"field": ".".join(str(p) for p in e["loc"]), "reason": e["msg"]} for e in exc.errors()
        ]
        detail = "the request does not match its schema"
        return problem(422, "Invalid request", detail, errors=errors)

    @app.exception_handler(TenureError)
    async def _refused(_: Request, exc: TenureError) -> JSONResponse:
        # A rule said no (a bad policy, a four-eyes rule, an unknown task): the message says why.
        return problem(422, "Refused", str(exc))

    @app.get("/healthz", tags=["probes"])
    def healthz() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["probes"])
    def readyz() -> Response:
        """The store answers."""
        try:
            with store.reader() as conn:
                conn.execute(select(1))
        except Exception as exc:  # any failure of the store means not ready
            return problem(503, "Not ready", f"the store does not answer: {type(exc).__name__}")
        return JSONResponse({"status": "ready"})

    @app.get("/metrics", tags=["probes"])
    def prometheus() -> Response:
        """Prometheus metrics."""
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.post("/v1/events", tags=["events"])
    async def post_events(
        request: Request, who: Annotated[Caller, Depends(svc.guard("ingest"))]
    ) -> dict[str, Any]:
        """A batch of events: per event accepted, duplicate or rejected (with the reason), and
        the decisions they caused, decided before the response returns."""
        raw = await request.body()
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise HTTPException(400, f"the body is not JSON: {exc}") from None
        items = body.get("events") if isinstance(body, dict) else body
        if not isinstance(items, list):
            raise HTTPException(400, 'send a JSON array of events, or {"events": [...]}')
        if len(items) > MAX_EVENTS:
            raise HTTPException(413, f"at most {MAX_EVENTS} events per request")
        return svc.ingest(items)

    @app.get("/v1/customers/{customer_id}", tags=["customers"])
    def get_customer(
        customer_id: str,
        who: Annotated[Caller, Depends(svc.guard("operator", "auditor", "partner"))],
        fields: Annotated[
            str | None,
            Query(description="Comma-separated top-level fields to return (default: all)."),
        ] = None,
    ) -> dict[str, Any]:
        """Features, risk with its explanation, value, decisions, journeys, loyalty balance and
        tier, and personal data (masked unless the role may see it). A partner sees only its own
        customers, and only the fields its contract shares; asking for another field is 403."""
        wanted = [f.strip() for f in fields.split(",") if f.strip()] if fields else []
        if who.role == "partner":
            svc.require_own_customer(who, customer_id, wanted)
        with store.reader() as conn:
            view = customer_view(conn, customer_id, scorer=svc.scorer)
        if view is None:
            raise HTTPException(404, f"no customer {customer_id!r}")
        view = mask_view(view, who.role)
        if who.role == "partner":
            scope = svc.sharing(who.partner or "")
            view = {k: v for k, v in view.items() if k == "customer_id" or k in scope}
        if wanted:
            view = {k: v for k, v in view.items() if k == "customer_id" or k in wanted}
        return view

    @app.delete("/v1/customers/{customer_id}/personal-data", tags=["customers"])
    def erase_customer(
        customer_id: str, who: Annotated[Caller, Depends(svc.guard())]
    ) -> dict[str, Any]:
        """Erase a customer's personal data (admin only); the audit chain and ledger still
        verify, and the erasure itself is an audit record."""
        return erase(store, customer_id, who.name)

    @app.get("/v1/decisions", tags=["decisions"])
    def list_decisions(
        who: Annotated[Caller, Depends(svc.guard("operator", "auditor"))],
        customer_id: str | None = None,
        status: Annotated[str | None, Query(pattern="^(action|none|suppressed|human)$")] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    ) -> list[dict[str, Any]]:
        """Decisions, newest first (optionally one customer's, or one status)."""
        with store.reader() as conn:
            return queries.decisions(conn, customer_id=customer_id, limit=limit, status=status)

    @app.get("/v1/decisions/{decision_id}", tags=["decisions"])
    def get_decision(
        decision_id: str, who: Annotated[Caller, Depends(svc.guard("operator", "auditor"))]
    ) -> dict[str, Any]:
        """A decision with its candidates, guardrail verdicts and lineage."""
        with store.reader() as conn:
            found = queries.decision_record(conn, decision_id)
        if found is None:
            raise HTTPException(404, f"no decision {decision_id!r}")
        return found

    app.include_router(policies.router(svc))
    app.include_router(operations.router(svc))
    app.include_router(loyalty_routes.router(svc))
    return app

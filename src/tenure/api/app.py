"""The HTTP service (FastAPI): events in, decisions back, customers, health and metrics.

Every path is versioned (`/v1/...`) except the probes; every error is `application/problem+json`
(RFC 9457) with the field or reason named; every call but the probes and `/metrics` needs a
bearer token whose role allows it. One pipeline per process decides; a lock keeps its batches
one at a time (the pipeline's caches are not shared between threads).

(No `from __future__ import annotations` here: FastAPI reads the dependency annotations.)
"""

import threading
import time
from collections.abc import Sequence
from typing import Annotated, Any

import orjson
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from sqlalchemy import select

from tenure import __version__
from tenure.api.auth import Caller, caller
from tenure.config import Settings
from tenure.events.envelope import Event
from tenure.events.parse import LineParser, RawLine, Reject
from tenure.journeys.library import workspace_library
from tenure.loyalty.contracts import Contract
from tenure.observe.http import instrument
from tenure.runtime import policies as policy_registry
from tenure.runtime.loyalty import workspace_contracts
from tenure.runtime.models import scorer_for
from tenure.runtime.pipeline import Pipeline
from tenure.runtime.views import customer_view
from tenure.store import queries, repo
from tenure.store import schema as t
from tenure.store.db import Store

PROBLEM = "application/problem+json"
MAX_EVENTS = 10_000


class Metrics:
    """The service's Prometheus metrics, in a registry of its own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.events = Counter(
            "tenure_events", "Events received, by outcome", ["outcome"], registry=self.registry
        )
        self.decisions = Counter(
            "tenure_decisions", "Decisions made, by status", ["status"], registry=self.registry
        )
        self.suppressions = Counter(
            "tenure_suppressions",
            "Suppressed decisions, by guardrail",
            ["guardrail"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "tenure_ingest_seconds",
            "Time to ingest and decide one request's events",
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
        )


def _problem(status: int, title: str, detail: str, **extra: Any) -> JSONResponse:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, **extra}
    return JSONResponse(body, status_code=status, media_type=PROBLEM)


def create_app(settings: Settings) -> FastAPI:
    """The app for one workspace."""
    store = Store(settings.database_url)
    metrics = Metrics()
    lock = threading.Lock()
    parser = LineParser(settings.extra_event_types)
    with store.reader() as conn:
        live = policy_registry.live_set(conn)
        scorer = scorer_for(conn)
    contracts = workspace_contracts(settings.workspace)
    pipeline = Pipeline(
        store,
        live,
        batch_size=MAX_EVENTS,
        scorer=scorer,
        guardrails=settings.guardrails,
        journeys=workspace_library(settings.workspace),
        contracts=contracts,
        tiers=settings.tiers,
    )
    app = FastAPI(
        title="tenure",
        version=__version__,
        description="Events in, governed and audited retention and loyalty actions out.",
    )
    app.state.store = store
    instrument(app, store, metrics, settings.channels)

    @app.exception_handler(HTTPException)
    async def _http(_: Request, exc: HTTPException) -> JSONResponse:
        titles = {401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 413: "Too Large"}
        response = _problem(exc.status_code, titles.get(exc.status_code, "Error"), str(exc.detail))
        if exc.status_code == 401:
            response.headers["WWW-Authenticate"] = "Bearer"
        return response

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"field": ".".join(str(p) for p in e["loc"]), "reason": e["msg"]} for e in exc.errors()
        ]
        return _problem(
            422, "Invalid request", "the request does not match its schema", errors=errors
        )

    def authorised(*roles: str) -> Any:
        def check(request: Request) -> Caller:
            header = request.headers.get("authorization", "")
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer" or not token:
                raise HTTPException(401, "a bearer token is needed (tenure tokens create)")
            with store.reader() as conn:
                who = caller(conn, token.strip())
            if who is None:
                raise HTTPException(401, "unknown or revoked token")
            if who.role not in ("admin", *roles):
                raise HTTPException(403, f"role {who.role!r} may not do this")
            return who

        return check

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
            return _problem(503, "Not ready", f"the store does not answer: {type(exc).__name__}")
        return JSONResponse({"status": "ready"})

    @app.get("/metrics", tags=["probes"])
    def prometheus() -> Response:
        """Prometheus metrics."""
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.post("/v1/events", tags=["events"])
    async def post_events(
        request: Request, who: Annotated[Caller, Depends(authorised("ingest"))]
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
        return _ingest(items)

    def _ingest(items: list[Any]) -> dict[str, Any]:
        started = time.perf_counter()
        parsed = [parser.parse(RawLine(i, orjson.dumps(x))) for i, x in enumerate(items, start=1)]
        events = [p for p in parsed if isinstance(p, Event)]
        with lock:
            with store.reader() as conn:
                known = repo.existing_event_ids(conn, [e.event_id for e in events])
            pipeline.run(iter(parsed), "api")
        results, seen, accepted = [], set(), []
        for i, p in enumerate(parsed):
            if isinstance(p, Reject):
                results.append(
                    {"index": i, "status": "rejected", "field": p.field, "reason": p.reason}
                )
            elif p.event_id in known or p.event_id in seen:
                results.append({"index": i, "event_id": p.event_id, "status": "duplicate"})
            else:
                seen.add(p.event_id)
                accepted.append(p.event_id)
                results.append({"index": i, "event_id": p.event_id, "status": "accepted"})
        with store.reader() as conn:
            d = t.decisions.c
            rows = (
                conn.execute(
                    select(d.record).where(d.trigger_event_id.in_(accepted), d.mode != "shadow")
                )
                .scalars()
                .all()
                if accepted
                else []
            )
        for r in results:
            metrics.events.labels(r["status"]).inc()
        for rec in rows:
            metrics.decisions.labels(rec["status"]).inc()
            if rec.get("guardrail"):
                metrics.suppressions.labels(rec["guardrail"]).inc()
        metrics.latency.observe(time.perf_counter() - started)
        return {"results": results, "decisions": list(rows)}

    @app.get("/v1/customers/{customer_id}", tags=["customers"])
    def get_customer(
        customer_id: str,
        who: Annotated[Caller, Depends(authorised("operator", "auditor", "partner"))],
    ) -> dict[str, Any]:
        """Features, risk with its explanation, value, decisions, journeys, loyalty balance and
        tier. A partner sees only its own customers, and only the fields its contract shares."""
        with store.reader() as conn:
            if who.role == "partner":
                e = t.events.c
                own = conn.execute(
                    select(e.event_id)
                    .where(e.customer_id == customer_id, e.partner_id == who.partner)
                    .limit(1)
                ).first()
                if own is None:
                    raise HTTPException(
                        403, f"customer {customer_id!r} is not a customer of {who.partner}"
                    )
            view = customer_view(conn, customer_id, scorer=scorer)
        if view is None:
            raise HTTPException(404, f"no customer {customer_id!r}")
        if who.role == "partner":
            scope = _sharing(contracts, who.partner or "")
            view = {k: v for k, v in view.items() if k == "customer_id" or k in scope}
        return view

    @app.get("/v1/decisions/{decision_id}", tags=["decisions"])
    def get_decision(
        decision_id: str, who: Annotated[Caller, Depends(authorised("operator", "auditor"))]
    ) -> dict[str, Any]:
        """A decision with its candidates, guardrail verdicts and lineage."""
        with store.reader() as conn:
            found = queries.decision_record(conn, decision_id)
        if found is None:
            raise HTTPException(404, f"no decision {decision_id!r}")
        return found

    return app


def _sharing(contracts: Sequence[Contract], partner: str) -> set[str]:
    """The customer fields a partner's contract lets it see (its newest version's scope)."""
    for contract in contracts:
        if contract.covers(partner):
            return set(contract.versions[-1].sharing.get(partner, []))
    return set()

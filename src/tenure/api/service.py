"""What every route of the service shares: the store, the deciding pipeline, and who may call.

One pipeline per process decides; a lock keeps its batches one at a time (the pipeline's caches
are not shared between threads). A policy promoted over the API takes effect at once: the
pipeline is rebuilt with the new live set under the same lock.

(No `from __future__ import annotations` here: FastAPI reads the dependency annotations.)
"""

import threading
import time
from collections.abc import Callable, Sequence
from typing import Annotated, Any

import msgspec
from fastapi import HTTPException, Request, Security
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CollectorRegistry, Counter, Histogram

from tenure.api.auth import Caller, caller
from tenure.config import Settings
from tenure.events.envelope import MAX_DEPTH, Event
from tenure.events.parse import Horizon, Reject
from tenure.loyalty.contracts import Contract
from tenure.runtime.clock import WallClock
from tenure.runtime.engine import Engine, learned
from tenure.runtime.pipeline import Pipeline
from tenure.store import repo, service_reads
from tenure.store.db import Store
from tenure.times import Clock
from tenure.workspace import Workspace

PROBLEM = "application/problem+json"
MAX_EVENTS = 10_000
# Who may read personal data (name, email, phone) in clear; everyone else sees it masked.
PERSONAL_DATA_ROLES = ("admin", "operator")
# The guards' scheme, for the OpenAPI document: the guard itself reads the header (and answers
# its own 401 problem), so this one never refuses.
BEARER = HTTPBearer(
    scheme_name="bearer",
    description="A token from `tenure tokens create`; its role decides what it may call.",
    auto_error=False,
)
Credentials = Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)]


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


def problem(status: int, title: str, detail: str, **extra: Any) -> JSONResponse:
    """An RFC 9457 problem response."""
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, **extra}
    return JSONResponse(body, status_code=status, media_type=PROBLEM)


def _clipped(value: Any, depth: int) -> Any:
    """`value` with what nests below `depth` replaced by "...": it stays JSON, and deep."""
    if isinstance(value, dict | list):
        if depth <= 0:
            return "..."
        if isinstance(value, dict):
            return {k: _clipped(v, depth - 1) for k, v in value.items()}
        return [_clipped(v, depth - 1) for v in value]
    return value


def _item_line(item: Any) -> bytes:
    """One item of a request as the JSON line the parser reads (integers of any size written as
    they came, for the parser to refuse what no store can hold). An item too deep for the JSON
    encoder is cut below `MAX_DEPTH` + 1 levels: still too deep, so it is rejected for that,
    with the cut item as its raw input."""
    try:
        return msgspec.json.encode(item)
    except RecursionError:
        return msgspec.json.encode(_clipped(item, MAX_DEPTH + 1))


class Service:
    """One workspace served: its store, pipeline, contracts and scorer, loaded once at start."""

    def __init__(self, settings: Settings, clock: Clock | None = None) -> None:
        self.settings = settings
        # Live: the wall clock moves the watermark (a test or a what-if run may set its own).
        self.clock: Clock = clock or WallClock()
        self.workspace = Workspace.load(settings)
        self.store = Store(settings.database_url)
        self.engine = Engine(self.workspace, self.store)
        self.metrics = Metrics()
        self.lock = threading.Lock()
        self.parser = self.workspace.parser()
        self.contracts: Sequence[Contract] = self.workspace.contracts
        self.journeys = self.workspace.journeys
        self.knowledge = learned(self.store)
        self.scorer = self.knowledge.scorer
        self.pipeline = self._pipeline()

    def _pipeline(self) -> Pipeline:
        return self.engine.pipeline(
            batch_size=MAX_EVENTS, knowledge=self.knowledge, clock=self.clock
        )

    def reload_policies(self) -> None:
        """Decide with the registry's live set, and what has been learned, from now on."""
        with self.lock:
            self.knowledge = learned(self.store)
            self.pipeline = self._pipeline()

    def guard(self, *roles: str) -> Callable[[Request], Caller]:
        """A dependency that admits a bearer token of one of `roles` (admin always)."""

        def check(request: Request, _: Credentials) -> Caller:
            header = request.headers.get("authorization", "")
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer" or not token:
                raise HTTPException(401, "a bearer token is needed (tenure tokens create)")
            with self.store.reader() as conn:
                who = caller(conn, token.strip())
            if who is None:
                raise HTTPException(401, "unknown or revoked token")
            if who.role not in ("admin", *roles):
                raise HTTPException(403, f"role {who.role!r} may not do this")
            return who

        return check

    def ingest(self, items: list[Any], source: str = "api") -> dict[str, Any]:
        """Parse, deduplicate and decide; per item accepted, duplicate or rejected, and the
        (non-shadow) decisions the accepted events caused."""
        started = time.perf_counter()
        # Each item as a line of its own, through the checks a file's lines get; events may be a
        # little ahead of each other and of the clock, not more (`ingest.max_future_skew`).
        horizon = Horizon(self.settings.max_future_skew, self.clock.now, live=True)
        parsed = list(self.parser.parse_stream([_item_line(x) for x in items], horizon))
        events = [p for p in parsed if isinstance(p, Event)]
        with self.lock:
            with self.store.reader() as conn:
                known = repo.existing_event_ids(conn, [e.event_id for e in events])
            self.pipeline.run(iter(parsed), source)
        results: list[dict[str, Any]] = []
        seen: set[str] = set()
        accepted: list[str] = []
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
        rows: list[Any] = []
        if accepted:
            with self.store.reader() as conn:
                rows = service_reads.decisions_triggered_by(conn, accepted)
        m = self.metrics
        for r in results:
            m.events.labels(r["status"]).inc()
        for rec in rows:
            m.decisions.labels(rec["status"]).inc()
            if rec.get("guardrail"):
                m.suppressions.labels(rec["guardrail"]).inc()
        m.latency.observe(time.perf_counter() - started)
        return {"results": results, "decisions": rows}

"""The HTTP service (FastAPI): events in, decisions back, customers, health and metrics.

Every path is versioned (`/v1/...`) except the probes; every error is `application/problem+json`
(RFC 9457) with the field or reason named; every call but the probes and `/metrics` needs a
bearer token whose role allows it. One pipeline per process decides; a lock keeps its batches
one at a time (the pipeline's caches are not shared between threads).
"""

from __future__ import annotations

from fastapi import FastAPI

from tenure import __version__
from tenure.api import contract, dashboard, docs, errors, routes
from tenure.api.limits import RequestLimits
from tenure.api.routes import tokens
from tenure.api.service import Service
from tenure.config import Settings
from tenure.observe.http import instrument
from tenure.times import Clock


def create_app(settings: Settings, clock: Clock | None = None) -> FastAPI:
    """The app for one workspace (deciding at wall-clock time unless given a clock)."""
    svc = Service(settings, clock)
    app = FastAPI(
        title="tenure",
        version=__version__,
        description="Events in, governed and audited retention and loyalty actions out.",
        docs_url=None,  # FastAPI's page fetches Swagger UI from a CDN: ours is packaged
        redoc_url=None,
    )
    app.openapi = lambda: contract.document(app, settings.extra_event_types)  # type: ignore[method-assign]
    app.state.store = svc.store
    app.state.service = svc
    # Errors first: its middleware must sit inside the observer's, which binds the request id.
    errors.install(app)
    app.add_middleware(RequestLimits)  # body size, NUL in path or query: before any route reads
    instrument(app, svc.store, svc.metrics, settings.channels)
    app.include_router(
        dashboard.router(svc.store, settings, svc.scorer, svc.contracts, svc.journeys)
    )
    for api in routes.routers(svc):
        app.include_router(api)
    app.include_router(tokens.router(svc))
    app.include_router(docs.router())
    return app

"""The JSON API under /v1 and the probes, one router module per resource.

Each module's `router(svc)` closes over the service: the guards in the handlers' signatures
need it when the route is declared, not when it is called.
"""

from __future__ import annotations

from fastapi import APIRouter

from tenure.api.routes import (
    customers,
    decisions,
    events,
    journeys,
    loyalty,
    partners,
    policies,
    probes,
    tasks,
    unsubscribe,
)
from tenure.api.service import Service


def routers(svc: Service) -> list[APIRouter]:
    """Every router of the service, in the order the OpenAPI document lists them."""
    modules = (
        probes,
        events,
        customers,
        decisions,
        policies,
        journeys,
        tasks,
        loyalty,
        partners,
        unsubscribe,
    )
    return [m.router(svc) for m in modules]

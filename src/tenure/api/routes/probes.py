"""Probes and metrics: no token needed (a load balancer and Prometheus call them).

(No `from __future__ import annotations` here: FastAPI reads the route annotations.)
"""

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from tenure.api.contract import problems
from tenure.api.service import Service, problem
from tenure.store import service_reads


def router(svc: Service) -> APIRouter:
    """The probe routes of one service."""
    api = APIRouter(tags=["probes"])

    @api.get("/healthz")
    def healthz() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    @api.get("/readyz", responses=problems(503))
    def readyz() -> Response:
        """The store answers."""
        try:
            with svc.store.reader() as conn:
                service_reads.ping(conn)
        except Exception as exc:  # any failure of the store means not ready
            return problem(503, "Not ready", f"the store does not answer: {type(exc).__name__}")
        return JSONResponse({"status": "ready"})

    @api.get(
        "/metrics",
        responses={200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}}}},
    )
    def prometheus() -> Response:
        """Prometheus metrics."""
        return Response(generate_latest(svc.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return api

"""The API's observability: a request id on every line and span, latency, the store's gauges.

`instrument(app, store, metrics)` adds them to an app made by `create_app` without changing its
routes. A request's id is its `X-Correlation-ID` (or `X-Request-ID`) header when it sends a
usable one, else a new one; it is bound as `request_id` to every line logged while the request
is handled (the pipeline's event and decision lines among them) and sent back in
`X-Correlation-ID`. Each event keeps its own `correlation_id` (its event id) for what follows
later: journeys and deliveries outlive the request.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Mapping
from typing import Any

from opentelemetry import trace
from prometheus_client import Histogram

from tenure.channels.adapters import ChannelSettings
from tenure.observe.logs import bound, get_logger
from tenure.observe.metrics import ProcessCollector, StoreCollector
from tenure.observe.tracing import tracer
from tenure.store.db import Store

HEADER = "x-correlation-id"
_USABLE = re.compile(r"[A-Za-z0-9._:@/+=-]{1,128}")
_PROBES = frozenset({"/healthz", "/readyz", "/metrics"})  # scraped often: debug lines only
log = get_logger("tenure.api")


def request_id(headers: Mapping[str, str]) -> str:
    """The caller's correlation id when it is a plain token of at most 128 characters, else new."""
    given = headers.get(HEADER) or headers.get("x-request-id") or ""
    return given if _USABLE.fullmatch(given) else uuid.uuid4().hex


class RequestObserver:
    """ASGI middleware: binds the request id, opens a server span, logs and times the request."""

    def __init__(self, app: Any, latency: Histogram) -> None:
        self.app = app
        self.latency = latency

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        rid = request_id(headers)
        status = 500
        started = time.perf_counter()

        async def sending(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [
                    *message.get("headers", []),
                    (HEADER.encode(), rid.encode("latin-1")),
                ]
            await send(message)

        method = scope["method"]
        with (
            bound(request_id=rid),
            tracer.start_as_current_span(
                f"{method} {scope['path']}", kind=trace.SpanKind.SERVER
            ) as span,
        ):
            try:
                await self.app(scope, receive, sending)
            finally:
                seconds = time.perf_counter() - started
                route = getattr(scope.get("route"), "path", None) or "unmatched"
                if span.is_recording():
                    span.update_name(f"{method} {route}")
                    span.set_attribute("http.request.method", method)
                    span.set_attribute("http.route", route)
                    span.set_attribute("http.response.status_code", status)
                    span.set_attribute("tenure.request_id", rid)
                self.latency.labels(method, route, str(status)).observe(seconds)
                (log.debug if route in _PROBES else log.info)(
                    "request",
                    method=method,
                    route=route,
                    status=status,
                    duration_ms=round(seconds * 1000, 2),
                )


def instrument(
    app: Any,
    store: Store,
    metrics: Any,
    channels: Mapping[str, ChannelSettings] | None = None,
) -> None:
    """Add request ids, spans and latency to `app`, and the store's gauges and this process's
    counters to `metrics.registry` (served on `/metrics`)."""
    latency = Histogram(
        "tenure_http_request_seconds",
        "Time to answer an API request, by method, route and status",
        ["method", "route", "status"],
        registry=metrics.registry,
        buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0),
    )
    metrics.registry.register(StoreCollector(store, channels))
    metrics.registry.register(ProcessCollector())
    app.add_middleware(RequestObserver, latency=latency)

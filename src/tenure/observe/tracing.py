"""Traces: OpenTelemetry spans from a decision through its journey to each delivery.

Each decision that starts a journey (or opens a task) is the root of a trace of its own, linked
to the span of the batch that decided it; its context travels in the outbox row (`trace` in the
payload), the dispatcher continues it when it starts the workflow, and Temporal's
`TracingInterceptor` carries it in headers into the workflow and every activity, where the
courier's send spans hang below. One trace is then one customer event's consequences, the same
chain the logs' `correlation_id` follows.

Nothing is exported by default (no network, and with no SDK provider the spans cost next to
nothing). `configure_tracing()` installs one from the standard variables:
`OTEL_TRACES_EXPORTER=otlp` (with `OTEL_EXPORTER_OTLP_ENDPOINT` etc.; needs
`pip install opentelemetry-exporter-otlp-proto-http`) or `console`; `OTEL_SERVICE_NAME` names
the service (default `tenure`). An application that sets the global tracer provider itself is
used as it is.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.propagate import extract, inject
from temporalio.client import Client

from tenure.errors import ConfigError

_override: list[trace.TracerProvider] = []


def _current() -> trace.Tracer:
    provider = _override[-1] if _override else trace.get_tracer_provider()
    return provider.get_tracer("tenure")


class _Tracer(trace.Tracer):
    """The tenure tracer: the global provider's, or the one a test put in place."""

    def start_span(self, *args: Any, **kwargs: Any) -> trace.Span:
        return _current().start_span(*args, **kwargs)

    def start_as_current_span(self, *args: Any, **kwargs: Any) -> Any:
        return _current().start_as_current_span(*args, **kwargs)


tracer: trace.Tracer = _Tracer()


@contextlib.contextmanager
def use_provider(provider: trace.TracerProvider) -> Iterator[None]:
    """Send tenure's spans to `provider` inside the block (tests: an in-memory exporter)."""
    _override.append(provider)
    try:
        yield
    finally:
        _override.remove(provider)


def carrier(span: trace.Span | None = None) -> dict[str, str]:
    """The W3C trace context of `span` (default: the current one), to store with a row."""
    out: dict[str, str] = {}
    ctx = trace.set_span_in_context(span) if span is not None else None
    inject(out, context=ctx)
    return out


def continued(data: Mapping[str, str] | None) -> otel_context.Context | None:
    """The context stored by `carrier`, to parent a span on (None when nothing was stored)."""
    return extract(dict(data)) if data else None


def with_tracing(client: Client) -> Client:
    """The same client with Temporal's tracing interceptor, unless it has one already.

    On the client, the interceptor puts the current span into the headers of every start and
    signal; a worker made with that client takes it too and continues the trace in workflows
    and activities.
    """
    from temporalio.contrib.opentelemetry import TracingInterceptor

    config = client.config()
    if any(isinstance(i, TracingInterceptor) for i in config["interceptors"]):
        return client
    config["interceptors"] = [*config["interceptors"], TracingInterceptor(tracer)]
    return Client(**config)


def configure_tracing(environ: Mapping[str, str] | None = None) -> str | None:
    """Install an SDK tracer provider when the OTEL_* variables ask for an exporter.

    Returns the exporter installed (`otlp`, `console`) or None (nothing configured, or tracing
    switched off with OTEL_SDK_DISABLED / OTEL_TRACES_EXPORTER=none).
    """
    env = os.environ if environ is None else environ
    if env.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return None
    wanted = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if not wanted and (
        env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    ):
        wanted = "otlp"
    if wanted in ("", "none"):
        return None
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    exporter: Any
    if wanted == "console":
        exporter = ConsoleSpanExporter()
    elif wanted == "otlp":
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError:
            raise ConfigError(
                "OTEL_TRACES_EXPORTER=otlp needs the exporter: "
                "pip install opentelemetry-exporter-otlp-proto-http"
            ) from None
        exporter = OTLPSpanExporter()  # reads OTEL_EXPORTER_OTLP_* itself
    else:
        raise ConfigError(f"OTEL_TRACES_EXPORTER={wanted!r}: tenure knows otlp, console, none")
    service = env.get("OTEL_SERVICE_NAME") or "tenure"
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    return wanted

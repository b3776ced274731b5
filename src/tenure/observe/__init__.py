"""Observability, all in the shell: structured logs, traces and Prometheus metrics.

`logs` (JSON lines, one correlation id per customer event's chain, personal data masked),
`tracing` (OpenTelemetry spans from decision to delivery, through Temporal), `metrics` (gauges
from the store, counters of this process) and `http` (the API's request ids, spans, latency).
"""

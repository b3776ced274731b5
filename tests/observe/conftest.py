"""Fixtures for observability: captured log lines and an in-memory span exporter."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tenure.observe.logs import configure_logging
from tenure.observe.tracing import use_provider


class Captured:
    """Everything tenure logged during a test, as text and as parsed JSON lines."""

    def __init__(self) -> None:
        self.buffer = io.StringIO()

    @property
    def text(self) -> str:
        return self.buffer.getvalue()

    def lines(self, **match: Any) -> list[dict[str, Any]]:
        rows = [orjson.loads(x) for x in self.text.splitlines()]
        return [r for r in rows if all(r.get(k) == v for k, v in match.items())]


@pytest.fixture
def logs() -> Iterator[Captured]:
    captured = Captured()
    configure_logging("debug", "json", captured.buffer)
    try:
        yield captured
    finally:
        configure_logging()


@pytest.fixture
def spans() -> Iterator[Callable[[], list[Any]]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with use_provider(provider):
        yield exporter.get_finished_spans
    provider.shutdown()

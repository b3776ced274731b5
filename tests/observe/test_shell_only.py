"""Logging and tracing live in the shell: the functional core neither logs nor traces."""

from __future__ import annotations

import re

import pytest

from tests.fixtures.core import CORE, SRC

OBSERVING = re.compile(
    r"^\s*(from|import)\s+(structlog|opentelemetry|logging|tenure\.observe)\b", re.MULTILINE
)


@pytest.mark.parametrize("room", [*CORE, "journeys/workflow.py"])
def test_core_imports_no_logging_or_tracing(room: str) -> None:
    paths = [SRC / room] if room.endswith(".py") else sorted((SRC / room).rglob("*.py"))
    offenders = [str(p.relative_to(SRC)) for p in paths if OBSERVING.search(p.read_text())]
    assert offenders == []

"""The functional core reads no clock and no global randomness (invariants 3 and 7)."""

from __future__ import annotations

import re

import pytest

from tests.fixtures.core import CORE, SRC

FORBIDDEN = re.compile(
    r"datetime\.now|datetime\.utcnow|date\.today|time\.time\(|time\.monotonic|"
    r"perf_counter|\bimport random\b|from random import|uuid\.uuid|"
    # numpy's global generator; a Generator seeded explicitly (never empty) is fine.
    r"np\.random\.(?!Generator\b|default_rng\((?!\)))"
)


@pytest.mark.parametrize("room", CORE)
def test_core_reads_no_clock_and_no_global_random(room: str) -> None:
    offenders = [
        f"{path.relative_to(SRC)}:{n}: {line.strip()}"
        for path in ([SRC / room] if room.endswith(".py") else sorted((SRC / room).rglob("*.py")))
        for n, line in enumerate(path.read_text().splitlines(), start=1)
        if FORBIDDEN.search(line)
    ]
    assert offenders == []

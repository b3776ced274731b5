"""The house keeps its shape (ARCHITECTURE.md, invariant 10): layers, sizes, no import cycles.

Where today's code still breaks a rule, the offenders are listed with what they measure now.
The list may only shrink: a new offender fails, a listed one that grows fails, and one that
is fixed must be taken off the list (so the list always says what is left to do).
"""

from __future__ import annotations

import sys

from tests.fixtures.house import functions, imports, module_name, modules

CORE = (
    "tenure.events",
    "tenure.features",
    "tenure.scoring",
    "tenure.policy",
    "tenure.audit",
    "tenure.sim",
    "tenure.loyalty",
    "tenure.journeys.machine",
    "tenure.journeys.spec",
    "tenure.journeys.library",
    "tenure.errors",
)
SHELL = (
    "tenure.store",
    "tenure.runtime",
    "tenure.services",
    "tenure.api",
    "tenure.cli",
    "tenure.observe",
    "tenure.channels",
    "tenure.workspace",
    "tenure.config",
)
OUTSIDE = ("sqlalchemy", "alembic", "temporalio", "httpx", "fastapi", "uvicorn", "structlog")
OUTSIDE += ("opentelemetry", "prometheus_client")
MAX_LINES = 70

# Modules outside store/ that still read the table definitions (their SQL is to move into store/).
SQL_OUTSIDE_STORE = {
    "tenure.api.auth",
    "tenure.api.dashboard",
    "tenure.api.loyalty",
    "tenure.api.service",
    "tenure.journeys.activities",
    "tenure.runtime.journeys",
    "tenure.runtime.loyalty",
    "tenure.runtime.personal",
    "tenure.runtime.policies",
    "tenure.runtime.policy_diff",
    "tenure.runtime.views",
}
# Functions still longer than MAX_LINES, with their length today.
LONG_FUNCTIONS = {
    "api/dashboard.py:router": 470,
    "api/loyalty.py:router": 152,
    "api/app.py:create_app": 141,
    "runtime/loyalty.py:accrue_in": 111,
    "runtime/loyalty.py:_loyalty_requests": 103,
    "cli/main.py:simulate": 90,
    "sim/closed_loop.py:run": 90,
    "cli/main.py:run": 84,
    "cli/main.py:demo": 81,
    "runtime/backtest.py:backtest": 81,
    "store/ledger.py:save": 81,
}
# Module-level import cycles still there, each as its sorted members.
CYCLES: list[list[str]] = []


def _within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") or name.startswith(p + "_") for p in prefixes)


def test_the_core_imports_nothing_from_the_shell_nor_io_libraries() -> None:
    offenders = {
        mod: sorted(i for i in imports(mod, path) if _within(i, SHELL + OUTSIDE))
        for mod, path in modules()
        if _within(mod, CORE)
    }
    assert {m: i for m, i in offenders.items() if i} == {}


def test_only_store_reads_the_table_definitions() -> None:
    readers = {
        mod
        for mod, path in modules()
        if not _within(mod, ("tenure.store",)) and "tenure.store.schema" in imports(mod, path)
    }
    assert readers - SQL_OUTSIDE_STORE == set(), "SQL belongs in store/"
    assert SQL_OUTSIDE_STORE - readers == set(), "moved into store/: take it off the list"


def test_no_function_grows_past_seventy_lines() -> None:
    long = {f.where: f.lines for f in functions() if f.lines > MAX_LINES}
    new = {w: n for w, n in long.items() if w not in LONG_FUNCTIONS}
    grown = {w: n for w, n in long.items() if w in LONG_FUNCTIONS and n > LONG_FUNCTIONS[w]}
    fixed = set(LONG_FUNCTIONS) - set(long)
    assert new == {}, f"split these (at most {MAX_LINES} lines): {new}"
    assert grown == {}, f"listed long functions only shrink: {grown}"
    assert fixed == set(), f"now short enough: take them off the list: {sorted(fixed)}"


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10_000))
    try:
        for v in sorted(graph):
            if v not in index:
                visit(v)
    finally:
        sys.setrecursionlimit(limit)
    return sorted(found)


def test_no_module_level_import_cycle() -> None:
    names = {mod for mod, _ in modules()}
    graph = {
        mod: {i for i in imports(mod, path, top_level_only=True) if i in names and i != mod}
        for mod, path in modules()
    }
    assert _cycles(graph) == sorted(CYCLES)


def test_the_fixture_names_modules_as_python_does() -> None:
    from tests.fixtures.house import SRC

    assert module_name(SRC / "runtime" / "engine.py") == "tenure.runtime.engine"
    assert module_name(SRC / "api" / "__init__.py") == "tenure.api"

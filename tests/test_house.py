"""The house keeps its shape (ARCHITECTURE.md, invariant 10): the core imports nothing from
the shell, SQL lives only in store/, no function is longer than 70 lines (migrations aside),
and no module-level import cycle exists."""

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
    "tenure.expressions",
    "tenure.times",
    "tenure.documents",
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
    assert readers == set(), "SQL belongs in store/"


def test_outside_store_sqlalchemy_is_only_a_connection_type_or_an_error() -> None:
    allowed = {"sqlalchemy", "sqlalchemy.Connection", "sqlalchemy.exc"}
    offenders = {
        mod: sorted(found)
        for mod, path in modules()
        if not _within(mod, ("tenure.store",))
        for found in [
            {
                i
                for i in imports(mod, path)
                if _within(i, ("sqlalchemy",))
                and i not in allowed
                and not i.startswith("sqlalchemy.exc")
            }
        ]
        if found
    }
    assert offenders == {}


def test_no_function_is_longer_than_seventy_lines() -> None:
    long = {f.where: f.lines for f in functions() if f.lines > MAX_LINES}
    assert long == {}, f"split these (at most {MAX_LINES} lines)"


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
    assert _cycles(graph) == []


def test_the_fixture_names_modules_as_python_does() -> None:
    from tests.fixtures.house import SRC

    assert module_name(SRC / "runtime" / "engine.py") == "tenure.runtime.engine"
    assert module_name(SRC / "api" / "__init__.py") == "tenure.api"

"""Test modules share builders only through tests/fixtures (and tests.helpers, tests.receiver):
no file under tests/ imports a test module, a conftest, or any other part of the tests package."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
ALLOWED = ("tests.fixtures", "tests.helpers", "tests.receiver")


def module_name(path: Path, root: Path = TESTS) -> str:
    """`tests/a/test_b.py` -> `tests.a.test_b` (a package's `__init__` is the package)."""
    parts = (root.name, *path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(source: str, module: str, is_package: bool) -> Iterator[tuple[int, str]]:
    """(line, dotted name) of everything the source imports; `from x import y` gives `x.y`."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            yield from ((node.lineno, a.name) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                base = node.module or ""
            else:
                package = module.split(".") if is_package else module.split(".")[:-1]
                package = package[: len(package) - (node.level - 1)]
                base = ".".join([*package, node.module] if node.module else package)
            for alias in node.names:
                yield node.lineno, base if alias.name == "*" else f"{base}.{alias.name}"


def offences(path: Path, root: Path = TESTS) -> list[str]:
    """Imports from the tests package that are not fixtures, helpers or the receiver."""
    module = module_name(path, root)
    found = imported(path.read_text(encoding="utf-8"), module, path.name == "__init__.py")
    return [
        f"{path.relative_to(root.parent)}:{line}: imports {name}"
        for line, name in found
        if (name == root.name or name.startswith(f"{root.name}."))
        and not any(name == ok or name.startswith(f"{ok}.") for ok in ALLOWED)
    ]


def test_no_test_module_imports_another_test_module() -> None:
    files = sorted(TESTS.rglob("*.py"))
    assert len([p for p in files if p.name.startswith("test_")]) >= 40  # the walk found the suite
    assert [o for path in files for o in offences(path)] == []


@pytest.mark.parametrize(
    ("where", "source"),
    [
        ("journeys/test_a.py", "from tests.journeys.test_temporal import history\n"),
        ("journeys/test_a.py", "from tests.journeys import test_temporal\n"),
        ("journeys/test_a.py", "import tests.loyalty.test_contracts\n"),
        ("journeys/test_a.py", "from .test_temporal import history\n"),
        ("journeys/test_a.py", "from ..policy.test_decide import NOW\n"),
        ("journeys/test_a.py", "def f():\n    from tests.conftest import store_url\n"),
        ("fixtures/b.py", "from tests.runtime.test_pipeline import EAGER\n"),
    ],
)
def test_the_check_catches_every_spelling(tmp_path: Path, where: str, source: str) -> None:
    root = tmp_path / "tests"
    path = root / where
    path.parent.mkdir(parents=True)
    path.write_text(source)
    assert len(offences(path, root)) == 1


@pytest.mark.parametrize(
    "source",
    [
        "from tests.fixtures.journeys import POLICY, history\n",
        "from tests.fixtures import journeys\n",
        "from tests.helpers import T0, ev\n",
        "from tests.receiver import running_receiver\n",
        "from ..fixtures.loyalty import CONTRACT\n",
        "import pytest\nfrom tenure.policy.model import default_policy\n",
    ],
)
def test_fixtures_helpers_and_the_library_are_allowed(tmp_path: Path, source: str) -> None:
    path = tmp_path / "tests" / "journeys" / "test_a.py"
    path.parent.mkdir(parents=True)
    path.write_text(source)
    assert offences(path, tmp_path / "tests") == []

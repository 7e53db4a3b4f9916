"""The import contract: the floors of ``recova`` and no import cycles.

Floors, from the bottom up:

- ``recova.platform.kernel``: config, database, crypto, errors, jobs runtime, logs,
  metrics, API helpers, request scope. It imports nothing else of Recova.
- ``recova.tenants``: tenancy (slugs, provisioning, migrations, ``tenant_scope``). It
  imports the kernel only; its HTTP face (``recova.tenants.api``) is a view like every
  domain's ``api.py`` and sits with them, over the access rules of ``auth``.
- the domains (``recova.platform.<domain>``, ``recova.connectors``, ``recova.billing``):
  anything below them and each other, never an entry point.
- ``recova.platform.entry``: the app factory, CLI, worker, scheduler, health and demo.
  Nothing imports it.

The graph is read from the source (module-level imports, ``TYPE_CHECKING`` ones included
for the floors but not for cycles, since they never run).
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
KERNEL = "recova.platform.kernel"
ENTRY = "recova.platform.entry"
TENANTS = "recova.tenants"
TENANCY_VIEWS = frozenset({"recova.tenants.api"})


@dataclass
class Graph:
    """Module → the Recova modules it imports (at run time, and only for type checking)."""

    runtime: dict[str, set[str]] = field(default_factory=dict)
    typing_only: dict[str, set[str]] = field(default_factory=dict)

    def all_edges(self, module: str) -> set[str]:
        return self.runtime.get(module, set()) | self.typing_only.get(module, set())


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _module_level_imports(tree: ast.Module) -> Iterable[tuple[ast.Import | ast.ImportFrom, bool]]:
    """(import, only for type checking) for every import that runs at module import."""

    def walk(body: list[ast.stmt], typing_only: bool) -> Iterable[tuple[ast.stmt, bool]]:
        for node in body:
            if isinstance(node, ast.Import | ast.ImportFrom):
                yield node, typing_only
            elif isinstance(node, ast.If):
                yield from walk(node.body, typing_only or _is_type_checking(node.test))
                yield from walk(node.orelse, typing_only)
            elif isinstance(node, ast.Try):
                for part in (node.body, node.orelse, node.finalbody):
                    yield from walk(part, typing_only)
                for handler in node.handlers:
                    yield from walk(handler.body, typing_only)

    for node, typing_only in walk(tree.body, False):
        assert isinstance(node, ast.Import | ast.ImportFrom)
        yield node, typing_only


def read_graph(root: Path, package: str = "recova") -> Graph:
    """The import graph of every module under ``root / package``."""
    paths = sorted((root / package).rglob("*.py"))
    modules = {module_name(root, path): path for path in paths}
    graph = Graph()
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        for node, typing_only in _module_level_imports(ast.parse(path.read_text())):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = node.module or ""
                if node.level:
                    anchor = name.split(".") if is_package else name.split(".")[:-1]
                    anchor = anchor[: len(anchor) - (node.level - 1)]
                    base = ".".join([*anchor, base] if base else anchor)
                for alias in node.names:
                    submodule = f"{base}.{alias.name}"
                    targets.append(submodule if submodule in modules else base)
            edges = graph.typing_only if typing_only else graph.runtime
            for target in targets:
                # Importing a.b.c runs a and a.b too; their __init__ files are empty.
                if target in modules and target != name:
                    edges.setdefault(name, set()).add(target)
        graph.runtime.setdefault(name, set())
    return graph


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected component of more than one module (Tarjan), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0

    def visit(node: str) -> None:
        nonlocal counter
        index[node] = low[node] = counter
        counter += 1
        stack.append(node)
        on_stack.add(node)
        for target in sorted(edges.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in edges.get(node, ()):
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return sorted(found)


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def floor_violations(graph: Graph) -> list[str]:
    """Every import that runs against the floors, as ``importer -> imported: why``."""
    wrong = []
    for module in sorted(graph.runtime):
        for target in sorted(graph.all_edges(module)):
            if _within(module, KERNEL) and not _within(target, KERNEL):
                wrong.append(f"{module} -> {target}: the kernel imports only the kernel")
            elif (
                _within(module, TENANTS)
                and module not in TENANCY_VIEWS
                and not (_within(target, KERNEL) or _within(target, TENANTS))
            ):
                wrong.append(f"{module} -> {target}: tenancy imports only the kernel")
            elif _within(target, ENTRY) and not _within(module, ENTRY):
                wrong.append(f"{module} -> {target}: nothing imports an entry point")
    return wrong


@pytest.fixture(scope="module")
def graph() -> Graph:
    return read_graph(ROOT)


def test_the_package_has_no_import_cycle(graph: Graph) -> None:
    assert cycles(graph.runtime) == []


def test_every_import_runs_down_the_floors(graph: Graph) -> None:
    assert floor_violations(graph) == []


def test_the_graph_is_read_whole(graph: Graph) -> None:
    # A reader that missed imports would pass the two tests above vacuously.
    assert "recova.platform.kernel.db" in graph.runtime["recova.platform.kernel.jobs"]
    assert "recova.connectors.runner" in graph.runtime["recova.connectors.jobs"]
    assert "recova.platform.entry.app" in graph.runtime["recova.platform.entry.cli"]
    importers_of_tenant_scope = {
        module for module, targets in graph.runtime.items() if "recova.tenants.scope" in targets
    }
    assert len(importers_of_tenant_scope) > 10


def _tree(tmp_path: Path, files: dict[str, str]) -> Graph:
    for relative, source in files.items():
        path = tmp_path / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source)
    return read_graph(tmp_path)


def test_a_cycle_and_an_upward_import_are_caught(tmp_path: Path) -> None:
    graph = _tree(
        tmp_path,
        {
            "recova/__init__.py": "",
            "recova/platform/__init__.py": "",
            "recova/platform/kernel/__init__.py": "",
            "recova/platform/kernel/jobs.py": "from recova.platform.entry.app import create_app\n",
            "recova/platform/entry/__init__.py": "",
            "recova/platform/entry/app.py": "from recova.billing import api\n",
            "recova/billing/__init__.py": "",
            "recova/billing/api.py": "from . import jobs\n",
            "recova/billing/jobs.py": "from ..platform.kernel import jobs\n",
            "recova/tenants/__init__.py": "",
            "recova/tenants/scope.py": (
                "from typing import TYPE_CHECKING\n"
                "if TYPE_CHECKING:\n    from recova.billing.api import x\n"
            ),
        },
    )
    assert cycles(graph.runtime) == [
        [
            "recova.billing.api",
            "recova.billing.jobs",
            "recova.platform.entry.app",
            "recova.platform.kernel.jobs",
        ]
    ]
    assert floor_violations(graph) == [
        "recova.platform.kernel.jobs -> recova.platform.entry.app:"
        " the kernel imports only the kernel",
        "recova.tenants.scope -> recova.billing.api: tenancy imports only the kernel",
    ]


def test_imports_inside_functions_do_not_count_as_module_imports(tmp_path: Path) -> None:
    graph = _tree(
        tmp_path,
        {
            "recova/__init__.py": "",
            "recova/a.py": "def f():\n    from recova import b\n",
            "recova/b.py": "from recova import a\n",
        },
    )
    assert graph.runtime["recova.a"] == set()
    assert cycles(graph.runtime) == []

"""The import structure of course_lib: no cycle, and the layers point one way (issue 13).

Imports are read with ``ast`` from every module, those inside functions included (an import
cycle hidden in a function still makes two modules depend on each other), except imports
under ``if TYPE_CHECKING:``. Importing ``a.b.c`` also runs ``a/__init__.py`` and
``a/b/__init__.py``, so a module depends on those packages too (except on its own packages,
which are already being imported when it runs).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "course_lib"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in PACKAGE.rglob("*.py")}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(tree: ast.AST):
    """Every Import/ImportFrom node, skipping ``if TYPE_CHECKING:`` bodies."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node):
            stack.extend(node.orelse)
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def _with_packages(name: str) -> set[str]:
    """``name`` and every package above it that is a course_lib module."""
    parts = name.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts) + 1)} & set(MODULES)


def imports_of(name: str) -> set[str]:
    """The course_lib modules that importing ``name`` runs directly (at any depth of code)."""
    path = MODULES[name]
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in _import_nodes(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # `from pkg import name`: a submodule when pkg/name.py exists, else an attribute
            targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
        for target in targets:
            while target and target not in MODULES:
                target = target.rpartition(".")[0]
            if target.startswith("course_lib"):
                found |= _with_packages(target)
    # a submodule's own packages are already being imported when it runs: not a dependency
    return found - _with_packages(name)


GRAPH = {name: imports_of(name) for name in MODULES}


def reachable(start: str) -> set[str]:
    seen, stack = set(), [start]
    while stack:
        for nxt in GRAPH[stack.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                stack.append(nxt)
    return seen


def find_cycles() -> list[list[str]]:
    """One cycle per strongly connected component of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(GRAPH[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for name in sorted(GRAPH):
        if name not in index:
            visit(name)
    return components


def test_the_reader_sees_function_level_imports_and_skips_type_checking_ones():
    source = "def f():\n    import course_lib.x\n\nif TYPE_CHECKING:\n    import course_lib.y\n"
    names = [node.names[0].name for node in _import_nodes(ast.parse(source))]
    assert names == ["course_lib.x"]
    assert "course_lib.runs" in GRAPH["course_lib.training"]
    assert "course_lib.config" in GRAPH["course_lib.runs"]


def test_no_import_cycle_among_course_lib_modules():
    cycles = find_cycles()
    assert cycles == [], "import cycles (function-level imports included): " + "; ".join(
        " <-> ".join(cycle) for cycle in cycles
    )


@pytest.mark.parametrize(
    ("module", "must_not_reach"),
    [
        ("course_lib.generation", "course_lib.training"),
        ("course_lib.training", "course_lib.generation"),
        ("course_lib.training", "course_lib.evaluation"),
        ("course_lib.runs", "course_lib.training"),
        ("course_lib.config", "course_lib.model"),
    ],
)
def test_layers_point_one_way(module, must_not_reach):
    assert must_not_reach not in reachable(module), (
        f"{module} imports {must_not_reach} (directly or through another module)"
    )

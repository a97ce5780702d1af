"""The layout a newcomer reads: every module of the project imports, and no import cycle joins them.

The import graph is built from the `import` / `from` statements themselves (with `ast`, function-level ones
included: an import deferred into a function to dodge a cycle is still a cycle), so a cycle is found even
where Python's import order happens to let it pass today.
"""
from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

from config import PROJECT_ROOT

SKIP_DIRS = {"tests", "build"}


def project_modules() -> dict[str, Path]:
    """Every module of the project, by dotted name: top-level scripts and the packages' modules."""
    modules: dict[str, Path] = {}
    for path in sorted(PROJECT_ROOT.glob("*.py")):
        modules[path.stem] = path
    for package in sorted(PROJECT_ROOT.glob("*/__init__.py")):
        if package.parent.name in SKIP_DIRS or package.parent.name.startswith("."):
            continue
        for path in sorted(package.parent.rglob("*.py")):
            parts = path.relative_to(PROJECT_ROOT).with_suffix("").parts
            modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def _absolute(importer: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = importer.split(".") if is_package else importer.split(".")[:-1]
    base = base[:len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imported(importer: str, is_package: bool, tree: ast.AST) -> set[str]:
    """The dotted names one module's statements import (modules, or `module.name` for a name from one)."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            module = _absolute(importer, is_package, node)
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


def _packages_entered(target: str, importer: str) -> list[str]:
    """Importing `a.b.c` runs `a` and `a.b` first, unless the importer is already inside them."""
    parts = target.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))
            if not (importer == ".".join(parts[:i]) or importer.startswith(".".join(parts[:i]) + "."))]


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), str(path))
        edges: set[str] = set()
        for target in _imported(name, path.name == "__init__.py", tree):
            if target in modules:
                edges.add(target)
                edges.update(p for p in _packages_entered(target, name) if p in modules)
        edges.discard(name)
        graph[name] = edges
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each as a sorted list."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
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
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_import_graph_has_no_cycle():
    graph = import_graph(project_modules())
    assert {"actors.gateway", "gateway.tools", "commands.interpreter", "runtime.supervisor"} <= set(graph)
    assert cycles(graph) == [], "import cycles (each a set of modules that import one another)"


def test_the_cycle_finder_finds_one():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


@pytest.mark.parametrize("name", [name for name in project_modules() if not name.endswith("__main__")])
def test_every_module_imports(name):
    importlib.import_module(name)


SURFACED = ("runtime", "clients", "store", "gateway", "commands", "actors")


def test_other_rooms_import_a_package_through_its_public_surface():
    """`from runtime import Directory`, not `from runtime.directory import Directory`, outside `runtime`
    (module level; tests and bench may reach inside to measure a part alone)."""
    reached_inside = []
    for name, path in project_modules().items():
        if name.split(".")[0] in ("bench",):
            continue
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.ImportFrom) and not node.level and node.module and "." in node.module:
                package = node.module.split(".")[0]
                if package in SURFACED and not name.startswith(package + ".") and name != package:
                    reached_inside.append(f"{name}: from {node.module} import …")
    assert reached_inside == []


def test_actors_holds_one_actor_per_module_registered_under_the_modules_name():
    """A newcomer finds an actor by its registered name: `actors/<name>.py` holds it and nothing else that is an
    actor (executors are registered under their config names, one per `executors:` entry)."""
    from runtime import SupervisedActor
    from vocabulary import ActorName
    modules = sorted(path.stem for path in (PROJECT_ROOT / "actors").glob("*.py") if path.stem != "__init__")
    for stem in modules:
        module = importlib.import_module(f"actors.{stem}")
        actors = [obj for obj in vars(module).values() if isinstance(obj, type) and issubclass(obj, SupervisedActor)
                  and obj is not SupervisedActor and obj.__module__ == module.__name__]
        assert len(actors) == 1, f"actors/{stem}.py defines {[a.__name__ for a in actors]}, not one actor"
        assert stem == "executor" or stem in set(ActorName), f"actors/{stem}.py is not registered as {stem!r}"

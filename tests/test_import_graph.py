"""No circles among the lab's modules: the graph of every `lab` and `ablations` module, with an
arrow for every import of one by another wherever it sits (at the top, inside a function, under
`TYPE_CHECKING`), has no cycle. An import placed inside a function still makes the two modules
depend on each other; counting it keeps a cycle from hiding there."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("lab", "ablations")


def module_files(root: Path = ROOT) -> dict[str, Path]:
    """Module name -> file, for every module of the lab's packages (`lab.engine` is its
    `__init__.py`)."""
    modules = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            modules[name] = path
    return modules


def _imported(
    node: ast.Import | ast.ImportFrom, here: str, is_package: bool, modules: set[str]
) -> set[str]:
    """The lab modules an import statement names: `from a import b` names `a.b` when that is a
    module, else `a`; a relative import is resolved against the importing module."""
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names} & modules
    base = node.module or ""
    if node.level:
        package = here.split(".") if is_package else here.split(".")[:-1]
        package = package[: len(package) - (node.level - 1)]
        base = ".".join([*package, base] if base else package)
    names = {f"{base}.{alias.name}" for alias in node.names}
    return (names if names <= modules else names | {base}) & modules


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """Module -> the lab modules it imports, counting every import statement in the file."""
    files = module_files(root)
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import | ast.ImportFrom):
                targets |= _imported(node, name, path.name == "__init__.py", set(files))
        graph[name] = targets - {name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (as a path a -> ... -> a) per strongly connected group of modules (Tarjan's
    algorithm), the groups in name order."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.add(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(group)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [_cycle_through(graph, group) for group in sorted(groups, key=min)]


def _cycle_through(graph: dict[str, set[str]], group: set[str]) -> list[str]:
    """The shortest path from the group's first module back to itself, inside the group."""
    start = min(group)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for target in sorted(graph[node] & group):
                if target == start:
                    return [*paths[node], start]
                if target not in paths:
                    paths[target] = [*paths[node], target]
                    following.append(target)
        frontier = following
    raise AssertionError(f"{sorted(group)} is not strongly connected")


def test_the_lab_has_no_import_cycle():
    found = cycles(import_graph())
    assert not found, "import cycles: " + "; ".join(" -> ".join(cycle) for cycle in found)


def test_the_check_sees_a_cycle_hidden_inside_a_function(tmp_path):
    """The check itself: two modules that import each other, one of them only inside a
    function, and a relative import, are a cycle reported with its path."""
    package = tmp_path / "lab" / "engine"
    package.mkdir(parents=True)
    (tmp_path / "lab" / "__init__.py").write_text("")
    (tmp_path / "ablations").mkdir()
    (package / "__init__.py").write_text("")
    (package / "local.py").write_text("from lab.engine import remote\n")
    (package / "remote.py").write_text("def run():\n    from .local import run\n")
    (package / "alone.py").write_text("import lab.engine.local\n")
    graph = import_graph(tmp_path)
    assert graph["lab.engine.alone"] == {"lab.engine.local"}
    assert cycles(graph) == [["lab.engine.local", "lab.engine.remote", "lab.engine.local"]]

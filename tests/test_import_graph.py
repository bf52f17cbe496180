"""The package's import graph has no cycles (design §2), and the tree is the README's map.

Every ``import`` of a ``labkit`` module counts, at module level or inside a
function: a lazy import still ties two modules together, it only hides the knot.
"""

import ast
import re
from pathlib import Path

import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components

PACKAGE = Path(__file__).resolve().parent.parent / "labkit"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """labkit module -> the labkit modules it imports.

    ``from labkit.backends import settle`` imports ``labkit.backends.settle`` *and* runs the package
    ``labkit.backends`` (its ``__init__``): both are edges. A package's ``__init__`` that imports
    nothing of labkit adds no cycle; one that does (``labkit.backends`` names every backend) must
    not be imported back by what it names.
    """
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text())):
            targets = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = name.split(".") if is_package else name.split(".")[:-1]
                    anchor = anchor[: len(anchor) - node.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                targets = [base] + [f"{base}.{alias.name}" for alias in node.names
                                    if f"{base}.{alias.name}" in modules]
            for target in targets:
                if target in modules and target != name and target != "labkit":
                    graph[name].add(target)
    return graph


def test_the_graph_sees_imports():
    graph = import_graph()
    assert "labkit.analysis.sla" in graph["labkit.analysis.report"]
    assert "labkit.backends.local.cgroups" in graph["labkit.backends.local.backend"]
    # the function-level imports in get_backend, and a package reached through `from package import`
    assert "labkit.backends.local.backend" in graph["labkit.backends"]
    assert "labkit.backends" in graph["labkit.vertical"]


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module: each is an import cycle."""
    names = sorted(graph)
    index = {n: i for i, n in enumerate(names)}
    edges = [(index[a], index[b]) for a in names for b in graph[a]]
    matrix = csr_matrix((np.ones(len(edges)), ([a for a, _ in edges], [b for _, b in edges])),
                        shape=(len(names), len(names)))
    _, labels = connected_components(matrix, directed=True, connection="strong")
    groups: dict[int, list[str]] = {}
    for name, label in zip(names, labels):
        groups.setdefault(label, []).append(name)
    return [g for g in groups.values() if len(g) > 1]


def test_a_planted_cycle_is_found():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycles():
    assert cycles(import_graph()) == []


def test_top_level_is_about_25_modules():
    top = sorted(p.stem for p in PACKAGE.glob("*.py"))
    assert len(top) <= 28, top


def test_readme_map_matches_the_tree():
    """Every module file is named in the README's module map, and every name there exists."""
    readme = (PACKAGE.parent / "README.md").read_text()
    block = readme.split("<!-- module map -->")[1].split("<!-- /module map -->")[0]
    named = set(re.findall(r"labkit/[\w/]+\.py", block))
    actual = {f"labkit/{p.relative_to(PACKAGE).as_posix()}" for p in PACKAGE.rglob("*.py")}
    assert named == actual, (sorted(actual - named), sorted(named - actual))

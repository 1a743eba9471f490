"""The layout is the architecture: the packages import each other in one direction only.

alignlab.core (the algorithm, no I/O) <- alignlab.lm, alignlab.storage <- alignlab.plots <- alignlab.runs <-
alignlab.science; the tiers (bandits, synthetic_llm, full_scale) use the core, lm and storage, and tier 3 never
imports tier 2. Imports inside functions count too: a deferred import is still an arrow.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SUBPACKAGES = ("core", "lm", "storage", "plots", "runs", "science")
TIERS = ("bandits", "synthetic_llm", "full_scale")


def package_of(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] == "alignlab" and len(parts) > 1 and parts[1] in SUBPACKAGES:
        return f"alignlab.{parts[1]}"
    if parts[0] in TIERS:
        return parts[0]
    return None


def import_graph() -> dict[str, set[str]]:
    files = [p for folder in ("alignlab", *TIERS) for p in (ROOT / folder).rglob("*.py")]
    graph: dict[str, set[str]] = defaultdict(set)
    for path in files:
        source = package_of(".".join(path.relative_to(ROOT).with_suffix("").parts))
        if source is None:
            continue
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
            else:
                continue
            graph[source].update(t for t in map(package_of, names) if t is not None and t != source)
    return graph


def cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle of the graph, or None."""
    state: dict[str, str] = {}

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return path[path.index(nxt) :] + [nxt] if nxt in path else [node, nxt]
            if nxt not in state and (found := visit(nxt, [*path, nxt])):
                return found
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start, [start])):
            return found
    return None


def test_the_packages_import_each_other_without_circles():
    graph = import_graph()
    assert graph["alignlab.runs"], "the graph is empty: the walk found no imports"
    assert cycle(graph) is None, f"import circle: {' -> '.join(cycle(graph))}"


def test_the_core_knows_no_tier_and_no_file_io_package_and_tier_3_does_not_import_tier_2():
    graph = import_graph()
    assert graph["alignlab.core"] == set(), graph["alignlab.core"]
    assert "synthetic_llm" not in graph["full_scale"]
    for package in SUBPACKAGES:
        assert not graph[f"alignlab.{package}"] & set(TIERS), (package, graph[f"alignlab.{package}"])


def test_a_circle_is_found_when_there_is_one():
    assert cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert cycle({"a": {"b"}, "b": set()}) is None

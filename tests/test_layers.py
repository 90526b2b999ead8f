"""The import graph of `ingot/`, `components/` and `pipelines/` against the layer order written in
docs/architecture.md ("Layers"): a lower layer never imports a higher one (imports inside
functions count), and no two packages import each other, directly or through others."""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOPS = ("ingot", "components", "pipelines")


def read_layers(doc: str) -> list[list[str]]:
    """The fenced block under the "Layers" heading: one layer a line, outermost first, names
    separated by commas (`ingot/` packages or modules by their name, top-level folders with a
    trailing slash)."""
    section = re.search(r"^#+ .*Layers.*?\n```[a-z]*\n(?P<block>.*?)```", doc, re.M | re.S)
    assert section, "docs/architecture.md has no fenced layer block under a 'Layers' heading"
    layers = []
    for line in section.group("block").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            layers.append([name.strip().rstrip("/") for name in line.split(",") if name.strip()])
    return layers


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def unit_of(module: str) -> str:
    """The package a module belongs to for layering: `ingot.X...` → X; a top-level folder → itself."""
    parts = module.split(".")
    if parts[0] == "ingot":
        return parts[1] if len(parts) > 1 else "ingot"
    return parts[0]


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> list[str]:
    if node.level:
        base = module.split(".")
        if not is_package:
            base = base[:-1]
        base = base[: len(base) - node.level + 1]
        prefix = ".".join(base + ([node.module] if node.module else []))
    else:
        prefix = node.module or ""
    # `from ingot import repository` imports the module ingot.repository.
    return [prefix] + [f"{prefix}.{alias.name}" for alias in node.names]


def import_edges() -> dict[tuple[str, str], list[str]]:
    """(importer unit, imported unit) → where, for every import between two units."""
    edges: dict[tuple[str, str], list[str]] = defaultdict(list)
    for top in TOPS:
        for path in sorted((ROOT / top).rglob("*.py")):
            if "compiled" in path.parts:
                continue
            module = module_name(path)
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    targets = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom):
                    targets = _resolve(module, path.name == "__init__.py", node)
                else:
                    continue
                for target in targets:
                    if target.split(".")[0] not in TOPS:
                        continue
                    if target == "ingot" and isinstance(node, ast.ImportFrom) and not node.level:
                        continue  # `from ingot import x`: the x entries say which module
                    if target.startswith("ingot.") and not _exists(target):
                        target = target.rsplit(".", 1)[0]  # `from ingot.pkg import name`
                    a, b = unit_of(module), unit_of(target)
                    if a != b:
                        edges[(a, b)].append(f"{path.relative_to(ROOT)}:{node.lineno}")
    return edges


def _exists(module: str) -> bool:
    rel = Path(*module.split("."))
    return (ROOT / rel).is_dir() or (ROOT / rel).with_suffix(".py").is_file()


def units() -> set[str]:
    found = {"components", "pipelines"}
    for entry in (ROOT / "ingot").iterdir():
        if entry.name.startswith(("_", ".")) or entry.name == "py.typed":
            continue
        if entry.is_dir() and (entry / "__init__.py").exists():
            found.add(entry.name)
        elif entry.suffix == ".py":
            found.add(entry.stem)
    return found


def strongly_connected(nodes: set[str], edges: set[tuple[str, str]]) -> list[list[str]]:
    """Tarjan's algorithm: the groups of units that reach each other (cycles)."""
    graph: dict[str, list[str]] = defaultdict(list)
    for a, b in edges:
        graph[a].append(b)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in graph[node]:
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            group = []
            while True:
                item = stack.pop()
                on_stack.discard(item)
                group.append(item)
                if item == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(nodes):
        if node not in index:
            visit(node)
    return groups


@pytest.fixture(scope="module")
def layers() -> list[list[str]]:
    return read_layers((ROOT / "docs" / "architecture.md").read_text(encoding="utf-8"))


def rank_of(layers: list[list[str]]) -> dict[str, int]:
    """Higher number = higher layer (the block lists the outermost first)."""
    return {name: len(layers) - i for i, layer in enumerate(layers) for name in layer}


def test_every_package_has_a_layer(layers):
    ranks = rank_of(layers)
    missing = sorted(units() - set(ranks) - {"ingot"})
    assert not missing, f"packages with no layer in docs/architecture.md: {missing}"
    stale = sorted(set(ranks) - units())
    assert not stale, f"docs/architecture.md names layers for packages that do not exist: {stale}"


def test_no_import_goes_up_a_layer(layers):
    ranks = rank_of(layers)
    ranks["ingot"] = 0  # the package root holds only __version__
    upward = [
        f"{a} (layer {ranks[a]}) imports {b} (layer {ranks[b]}) at {', '.join(sorted(set(where)))}"
        for (a, b), where in sorted(import_edges().items())
        if a in ranks and b in ranks and ranks[b] > ranks[a]
    ]
    assert not upward, "imports against the layer order:\n" + "\n".join(upward)


def test_no_cycle_between_packages():
    edges = import_edges()
    groups = strongly_connected(units() | {"ingot"}, set(edges))
    assert not groups, "import cycles between packages: " + "; ".join(" <-> ".join(g) for g in groups)


def test_the_checker_sees_lazy_relative_and_attribute_imports(tmp_path):
    """The graph builder reads imports inside functions and `from ingot import x` forms."""
    source = "def f():\n    from ingot import cli\n    import ingot.loop.run\n"
    tree = ast.parse(source)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            found += _resolve("ingot.data.x", False, node)
        elif isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
    assert "ingot.cli" in found and "ingot.loop.run" in found
    assert strongly_connected({"a", "b", "c"}, {("a", "b"), ("b", "c"), ("c", "a")}) == [["a", "b", "c"]]
    assert strongly_connected({"a", "b"}, {("a", "b")}) == []

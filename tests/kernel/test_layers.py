"""The package's import graph: layers never reach upward and no two modules import each other (through any
path). ``core`` is the kernel: it imports no built-in plugin and no web layer; plugins, families, trackers and
publishers import the kernel, never the web layer; ``ui`` may import anything below it. Imports made only for type
checking (``if TYPE_CHECKING:``) are not edges."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOP_FOLDERS = ("core", "plugins", "ui", "model_families", "trackers", "publishers")
#: What each layer may import besides itself.
ALLOWED = {
    "core": set(),
    "plugins": {"core"},
    "model_families": {"core"},
    "trackers": {"core"},
    "publishers": {"core"},
    "ui": {"core", "plugins", "model_families", "trackers", "publishers"},
}


def _modules() -> dict[str, Path]:
    found = {}
    for top in TOP_FOLDERS:
        for path in (ROOT / top).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(["simpletuner", *parts])] = path
    return found


def _runtime_imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Import statements outside ``if TYPE_CHECKING:`` blocks (anywhere else, function bodies included)."""
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()

    def owner(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    edges: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets: set[str] = set()
        for node in _runtime_imports(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets |= {alias.name for alias in node.names}
                continue
            base = node.module or ""
            if node.level:
                stem = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*stem, *([node.module] if node.module else [])])
            targets.add(base)
            targets |= {f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in modules}
        edges[name] = {t for t in (owner(t) for t in targets if t.startswith("simpletuner.")) if t and t != name}
    return edges


@pytest.mark.timeout(60)
def test_no_layer_imports_upward() -> None:
    wrong = []
    for name, targets in _graph().items():
        layer = name.split(".")[1]
        for target in targets:
            other = target.split(".")[1]
            if other != layer and other not in ALLOWED[layer]:
                wrong.append(f"{name} -> {target}")
    assert wrong == []


@pytest.mark.timeout(60)
def test_no_import_cycles() -> None:
    edges = _graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def connect(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in edges[node]:
            if target not in index:
                connect(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in edges:
        if node not in index:
            connect(node)
    assert cycles == []

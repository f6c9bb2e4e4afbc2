"""The import layers of docs/architecture.md, checked from the code's own imports.

A module may import from its own layer or a lower one; packages that share a layer (the two
faces, hub.api and hub.cli) never import each other; no import cycle exists between modules.
Function-level imports count too: a lazy import is still a dependency.
"""

import ast
from collections.abc import Iterable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("hub", "activities", "workflows")

LAYERS: list[tuple[str, ...]] = [
    ("hub.core",),
    ("hub.config",),
    ("hub.secrets",),
    ("hub.store",),
    ("hub.transport",),
    ("hub.runtime",),
    ("activities",),
    ("workflows",),
    ("hub.engine",),
    ("hub.client",),
    ("hub.api", "hub.cli", "hub.console"),
    ("hub.dev",),
    ("hub.main", "worker"),
]
"""Lowest first. ``hub`` itself (the package's ``__version__``) sits below them all."""


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def our_modules(root: Path = ROOT) -> dict[str, Path]:
    found = {"worker": root / "worker.py"}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            found[module_name(path, root)] = path
    return found


def imports_of(path: Path, name: str, known: Iterable[str]) -> Iterator[tuple[str, int]]:
    """(imported module of ours, line) for every import statement in the file."""
    known = set(known)
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield from _ours(alias.name, known, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node, name, is_package)
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                target = candidate if candidate in known else base
                yield from _ours(target, known, node.lineno)


def _absolute(node: ast.ImportFrom, name: str, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    parts = name.split(".")
    keep = len(parts) - node.level + (1 if is_package else 0)
    return ".".join([*parts[:keep], *([node.module] if node.module else [])])


def _ours(target: str, known: set[str], line: int) -> Iterator[tuple[str, int]]:
    while target and target not in known:
        target = target.rpartition(".")[0]
    if target:
        yield target, line


def layer_of(module: str) -> tuple[int, str]:
    """(layer index, the layer entry it belongs to); ``hub`` itself is layer -1."""
    if module == "hub":
        return -1, "hub"
    for index, entries in enumerate(LAYERS):
        for entry in entries:
            if module == entry or module.startswith(entry + "."):
                return index, entry
    raise AssertionError(f"{module} belongs to no layer: add it to LAYERS and the docs")


def violations(graph: dict[str, list[tuple[str, int]]]) -> list[str]:
    """Every import that goes up a layer or sideways between sibling packages."""
    found = []
    for module, targets in graph.items():
        level, entry = layer_of(module)
        for target, line in targets:
            target_level, target_entry = layer_of(target)
            if target_level > level or (target_level == level and target_entry != entry):
                found.append(f"{module}:{line} imports {target} ({target_entry} is not below)")
    return found


def cycles(graph: dict[str, list[tuple[str, int]]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target, _ in graph.get(node, []):
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
            if len(component) > 1:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return found


def import_graph(root: Path = ROOT) -> dict[str, list[tuple[str, int]]]:
    modules = our_modules(root)
    return {
        name: [(t, line) for t, line in imports_of(path, name, modules) if t != name]
        for name, path in modules.items()
    }


def test_every_import_goes_down_a_layer():
    assert violations(import_graph()) == []


def test_no_import_cycles():
    assert cycles(import_graph()) == []


def test_every_module_has_a_layer():
    for module in our_modules():
        layer_of(module)


def test_no_module_past_400_lines():
    """No module past 400 lines (the issue's bound; a longer one is asking to be split)."""
    long = {
        name: n
        for name, path in our_modules().items()
        if (n := len(path.read_text().splitlines())) > 400
    }
    assert long == {}


def test_no_function_past_60_lines():
    long = []
    for name, path in our_modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > 60:
                    long.append(f"{name}.{node.name}: {length} lines")
    assert long == []


# The checker itself: it must catch what it is for.


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for relative, text in {"worker.py": "", **files}.items():
        path = tmp_path / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for package in PACKAGES:
        (tmp_path / package).mkdir(exist_ok=True)
    return tmp_path


def test_checker_catches_an_upward_import(tmp_path):
    root = _tree(
        tmp_path,
        {
            "hub/__init__.py": "",
            "hub/core/__init__.py": "",
            "hub/core/models.py": "def f():\n    from hub.api import app\n",
            "hub/api/__init__.py": "app = 1\n",
        },
    )
    assert violations(import_graph(root)) == [
        "hub.core.models:2 imports hub.api (hub.api is not below)"
    ]


def test_checker_catches_faces_importing_each_other(tmp_path):
    root = _tree(
        tmp_path,
        {
            "hub/__init__.py": "",
            "hub/cli/__init__.py": "from ..api import routes\n",
            "hub/api/__init__.py": "",
            "hub/api/routes.py": "",
        },
    )
    assert violations(import_graph(root)) == [
        "hub.cli:1 imports hub.api.routes (hub.api is not below)"
    ]


def test_checker_catches_a_cycle(tmp_path):
    root = _tree(
        tmp_path,
        {
            "hub/__init__.py": "",
            "hub/store/__init__.py": "",
            "hub/store/a.py": "from hub.store import b\n",
            "hub/store/b.py": "import hub.store.a\n",
        },
    )
    assert cycles(import_graph(root)) == [["hub.store.a", "hub.store.b"]]


def test_layers_order_core_store_faces():
    order = [layer_of(m)[0] for m in ("hub", "hub.core.models", "hub.store.rules", "hub.api.app")]
    assert order == sorted(order) and len(set(order)) == 4

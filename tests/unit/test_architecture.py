"""The layers point one way, no module imports itself through others, and every public name is
exported once."""

import ast
from pathlib import Path

import pytest

import ergon_actors

pytestmark = pytest.mark.timeout(20)
PACKAGE = Path(ergon_actors.__file__).parent
# A module may import from its own layer and the layers below it, never above.
LAYERS = [
    {"errors", "config", "logs"},
    {"codec"},
    {"core"},
    {"wire"},
    {"storage"},
    {"decorators", "executor", "models"},
    {"runtime"},
    {"ops"},
    {"chaos", "testing"},
    {"dashboard"},
    {"cli", "__main__"},
]


def layer_of(module: str) -> int:
    top = module.split(".")[0]
    return next(i for i, names in enumerate(LAYERS) if top in names)


def imports(path: Path) -> set[str]:
    """Top-level ergon_actors modules that `path` imports, at any depth of the file."""
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = list(parts[:len(parts) - node.level])
            target = base + (node.module.split(".") if node.module else [])
            if target:
                found.add(target[0])
            else:
                found.update(alias.name for alias in node.names)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [node.module] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
            found.update(n.split(".")[1] for n in names if n and n.startswith("ergon_actors."))
    return found


@pytest.mark.parametrize("path", sorted(p for p in PACKAGE.rglob("*.py") if p.name != "__init__.py"
                                        or p.parent != PACKAGE), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_down(path):
    own = path.relative_to(PACKAGE).parts[0].removesuffix(".py")
    upward = sorted(m for m in imports(path) if layer_of(m) > layer_of(own))
    assert not upward, f"{path.relative_to(PACKAGE)} imports from higher layers: {upward}"


def test_public_names_are_exported_once_and_importable():
    names = ergon_actors.__all__
    assert len(names) == len(set(names))
    for name in names:
        assert getattr(ergon_actors, name) is not None


def module_name(path: Path, root: Path = PACKAGE) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def module_imports(path: Path, known: set[str], root: Path = PACKAGE) -> set[str]:
    """The package's modules that `path` imports, by dotted name, wherever in the file.

    `from X import a` counts as importing X.a when that is a module, else X. The parent
    packages Python imports on the way are not counted: only what the file names.
    """
    own = module_name(path, root)
    package = own.split(".") if path.name == "__init__.py" else own.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            target = ".".join(base + (node.module.split(".") if node.module else []))
            for alias in node.names:
                found.add(f"{target}.{alias.name}" if f"{target}.{alias.name}" in known else target)
    return found & known - {own}


def import_cycles(root: Path = PACKAGE) -> list[set[str]]:
    """Every set of modules that import each other in a ring (strongly connected components)."""
    paths = {module_name(p, root): p for p in root.rglob("*.py")}
    graph = {name: module_imports(path, set(paths), root) for name, path in paths.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(node: str) -> None:  # Tarjan's algorithm
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(component)

    for name in sorted(graph):
        if name not in index:
            visit(name)
    return cycles


def test_no_import_cycles():
    cycles = [sorted(c) for c in import_cycles()]
    assert not cycles, f"modules importing each other in a ring: {cycles}"


def test_the_cycle_check_finds_a_ring_also_through_imports_inside_functions(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("from .b import x\n")
    (pkg / "a.py").write_text("import os\nfrom .sub.b import x\n")
    (pkg / "sub" / "b.py").write_text("def f():\n    from ..a import g\n")
    (pkg / "c.py").write_text("from . import a\nfrom pkg.sub import b\n")
    assert import_cycles(pkg) == [{"pkg.a", "pkg.sub.b"}]

"""The layers point one way, and every public name is exported once."""

import ast
from pathlib import Path

import pytest

import ergon_actors

pytestmark = pytest.mark.timeout(20)
PACKAGE = Path(ergon_actors.__file__).parent
# A module may import from its own layer and the layers below it, never above.
LAYERS = [
    {"errors", "config"},
    {"codec"},
    {"core"},
    {"wire"},
    {"storage"},
    {"decorators", "executor"},
    {"runtime"},
    {"chaos", "testing"},
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

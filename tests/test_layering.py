"""The package's one-way layering (docs/design.md): a module imports only from its own package or from
packages of lower layers, so there are no cycles and, say, ``experiments`` never reaches into ``cli``.
Every import counts, including those inside functions (lazy imports are still dependencies)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "src" / "prunelab"

# lowest first; a package may import from any lower layer
LAYERS = [
    {"errors"},
    {"steps"},
    {"specs"},
    {"store"},
    {"data", "models", "analysis"},
    {"masks"},
    {"pruning", "training", "distributed"},
    {"supermask"},
    {"experiments"},
    {"api"},
    {"cli", "__init__"},
    {"__main__"},
]
LAYER = {name: i for i, names in enumerate(LAYERS) for name in names}


def package_of(path: Path) -> str:
    return path.relative_to(ROOT).parts[0].removesuffix(".py")


def imported_packages(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules = [node.module]
        elif isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        else:
            continue
        found.update(m.split(".")[1] for m in modules if m.startswith("prunelab."))
    return found


MODULES = sorted(ROOT.rglob("*.py"))


def test_every_package_has_a_layer():
    packages = {package_of(path) for path in MODULES}
    assert packages <= set(LAYER), f"give these a layer in LAYERS: {sorted(packages - set(LAYER))}"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_a_module_imports_only_its_own_package_and_lower_layers(path):
    own = package_of(path)
    upward = sorted(p for p in imported_packages(path) - {own} if LAYER.get(p, -1) >= LAYER[own])
    assert not upward, f"{path.relative_to(ROOT)} ({own}, layer {LAYER[own]}) imports {upward}"


def test_the_check_sees_an_upward_import(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from prunelab.cli.common import format_table\n    import prunelab.store\n")
    assert imported_packages(module) == {"cli", "store"}

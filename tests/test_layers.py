"""The core is layered: each core module imports only modules of lower layers (read with ast).

The order is docs/architecture.md's: state, then the graph's data and the rule kinds, the
Tensor, view semantics, the registry and dispatcher, the ops, the reverse engine, the public
autograd/forward-mode functions, the transforms, and ``_bind``, which alone reaches down to
give the lower layers the few names they call above them.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "autodiffx"

#: Low to high; a module may import (at any depth, also inside functions) only earlier ones.
LAYERS = [
    ["_mode", "_broadcast"],
    ["_convert", "_node", "_rules"],
    ["_xp"],
    ["_tensor"],
    ["_views"],
    ["_registry"],
    ["ops"],
    ["_inplace"],
    ["_graph"],
    ["autograd", "forward"],
    ["_transforms"],
    ["_hvp"],
    ["_vmap"],
    ["func"],
    ["_bind"],
]
RANK = {m: i for i, layer in enumerate(LAYERS) for m in layer}


def _core_imports(path: Path, package: str) -> set[str]:
    """The core modules ``path`` imports, by their first name under ``autodiffx``."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level == 0:
                parts = (node.module or "").split(".")
                names = parts[1:2] if parts[0] == "autodiffx" else []
            else:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                full = [*base, *((node.module or "").split(".") if node.module else [])]
                names = full[1:2] if len(full) > 1 else []
                if not node.module:  # from . import x, y
                    names = [a.name for a in node.names] if len(base) == 1 else base[1:2]
            found.update(names)
        elif isinstance(node, ast.Import):
            for a in node.names:
                parts = a.name.split(".")
                if parts[0] == "autodiffx" and len(parts) > 1:
                    found.add(parts[1])
    return {m for m in found if m in RANK}


def _modules() -> list[tuple[str, Path, str]]:
    out = []
    for name in RANK:
        path = PKG / f"{name}.py"
        if path.exists():
            out.append((name, path, "autodiffx"))
        else:
            for p in sorted((PKG / name).glob("*.py")):
                out.append((name, p, f"autodiffx.{name}"))
    return out


@pytest.mark.parametrize(("name", "path", "package"), _modules(), ids=lambda v: str(v))
def test_core_modules_import_downward_only(name, path, package):
    upward = sorted(m for m in _core_imports(path, package) if RANK[m] >= RANK[name] and m != name)
    assert not upward, (
        f"{path.relative_to(PKG.parent)} (layer {RANK[name]}) imports {upward}, which are not "
        "below it; see docs/architecture.md for the layers and autodiffx/_bind.py for the one "
        "place that binds names of higher layers into lower ones"
    )


def test_every_core_module_has_a_layer():
    core = {"_mode", "_broadcast", "_convert", "_node", "_rules", "_tensor", "_views"}
    core |= {"_registry", "_inplace", "_graph", "autograd", "forward", "_transforms", "_hvp"}
    core |= {"func", "_bind"}
    assert core <= set(RANK)
    assert all((PKG / f"{m}.py").exists() or (PKG / m).is_dir() for m in RANK)


def test_the_check_sees_an_upward_import(tmp_path):
    bad = tmp_path / "x.py"
    bad.write_text("def f():\n    from ._graph import run_backward\n")
    assert _core_imports(bad, "autodiffx") == {"_graph"}
    bad.write_text("from . import ops as _F\nimport autodiffx._hvp\n")
    assert _core_imports(bad, "autodiffx") == {"ops", "_hvp"}
    bad.write_text("from .shape import x\nfrom .. import _tensor\nfrom .._graph import f\n")
    assert _core_imports(bad, "autodiffx.ops") == {"ops", "_tensor", "_graph"}

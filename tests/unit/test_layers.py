"""The layers of backend/: API -> services -> adapters, read from every module's imports.

The API reaches storage, embedders and LLMs only through the services (their errors and records
included: backend/services/errors.py re-exports what the API maps to a status); adapters know
nothing above them. `container` and `main` are the composition root and may see every layer.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

BACKEND = Path(__file__).resolve().parents[2] / "backend"

# package -> the backend packages its modules must not import
FORBIDDEN = {
    "api": ("backend.adapters",),
    "services": ("backend.api", "backend.container", "backend.main"),
    "adapters": ("backend.api", "backend.services", "backend.container", "backend.main"),
}


def _imports(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
    return found


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_no_module_imports_a_layer_it_must_not_see(layer: str) -> None:
    modules = sorted((BACKEND / layer).rglob("*.py"))
    assert modules, f"backend/{layer} has no modules: the layer map is stale"
    breaches = [
        f"{path.relative_to(BACKEND.parent)}:{line} imports {module}"
        for path in modules
        for line, module in _imports(path)
        if any(module == f or module.startswith(f + ".") for f in FORBIDDEN[layer])
    ]
    assert not breaches, "\n".join(breaches)


def test_the_check_sees_a_breach(tmp_path: Path) -> None:
    module = tmp_path / "route.py"
    module.write_text("from backend.adapters.store import StoreError\nimport backend.api.errors\n")
    assert _imports(module) == [(1, "backend.adapters.store"), (2, "backend.api.errors")]

"""The layers, from the code's own imports: entry (app) -> flows, deployments -> tasks -> core (seqcast), storage.

An import may only point down. Function-level imports count as much as module-level ones.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO_ROOT

# package -> the top-level packages it must not import
FORBIDDEN = {
    "seqcast": {"app", "flows", "deployments", "tasks", "storage", "prefect"},
    "storage": {"app", "flows", "deployments", "tasks", "prefect", "seqcast"},
    "tasks": {"app", "flows", "deployments"},
    "flows": {"app", "deployments"},
    "deployments": {"app"},
}
# storage shares the core's naming rule and nothing else of it
ALLOWED = {"storage": {"seqcast.names"}}


def imported_modules(tree: ast.AST) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return found


def upward_imports(root: Path) -> list[str]:
    """Every import under ``root`` that points up a layer, as ``path:line imports module``."""
    bad = []
    for package, forbidden in FORBIDDEN.items():
        for path in sorted((root / package).rglob("*.py")):
            for line, module in imported_modules(ast.parse(path.read_text(), str(path))):
                if module.split(".")[0] in forbidden and module not in ALLOWED.get(package, ()):
                    bad.append(f"{path.relative_to(root)}:{line} imports {module}")
    return bad


def test_every_import_points_down_a_layer():
    assert upward_imports(REPO_ROOT) == []


def test_the_check_finds_an_upward_import(tmp_path):
    for package, source in {"seqcast": "import numpy\n\ndef f():\n    from storage.models import Models\n",
                            "storage": "from seqcast.names import SAFE_NAME\nfrom seqcast.models import REGISTRY\n",
                            "tasks": "from flows.forecast import forecast\n",
                            "flows": "from deployments.forecast import deployment_specs\n",
                            "app": "from flows.forecast import forecast\n"}.items():
        (tmp_path / package).mkdir()
        (tmp_path / package / "module.py").write_text(source)
    assert upward_imports(tmp_path) == [
        "seqcast/module.py:4 imports storage.models",
        "storage/module.py:2 imports seqcast.models",
        "tasks/module.py:1 imports flows.forecast",
        "flows/module.py:1 imports deployments.forecast",
    ]

"""The layers, from the code's own imports: entry (app) -> flows, deployments -> tasks -> core (seqcast), storage.

An import may only point down. Function-level imports count as much as module-level ones.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO_ROOT

# Every module imports under seqcast's name; a folder's layer is the subpackage it installs as.
LAYERS = {"app": "app", "flows": "flows", "deployments": "deployments", "tasks": "tasks", "storage": "storage",
          "seqcast": "core"}
# layer -> the layers (and third-party packages) it must not import
FORBIDDEN = {
    "core": {"app", "flows", "deployments", "tasks", "storage", "prefect"},
    "storage": {"app", "flows", "deployments", "tasks", "prefect", "core"},
    "tasks": {"app", "flows", "deployments"},
    "flows": {"app", "deployments"},
    "deployments": {"app"},
}
# storage shares the core's naming rule, reads the settings that say where it lives, and cuts a stored dataset's
# windows with the core's own array code (plain numpy, so ingest and every reader cut them alike); nothing else of it
ALLOWED = {"storage": {"seqcast.config.names", "seqcast.config.settings", "seqcast.data.windows"}}
# the package's front door lends the library's calls from the entry layer, on first use (PEP 562)
FRONT_DOOR = ("seqcast/__init__.py", "seqcast.app")


def layer_of(module: str) -> str:
    """The layer an imported module belongs to: ``seqcast.flows.x`` -> flows, ``seqcast.data.x`` -> core."""
    parts = module.split(".")
    if parts[0] != "seqcast":
        return parts[0]
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS and parts[1] != "seqcast" else "core"


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
    for folder, layer in LAYERS.items():
        forbidden = FORBIDDEN.get(layer, set())
        for path in sorted((root / folder).rglob("*.py")):
            for line, module in imported_modules(ast.parse(path.read_text(), str(path))):
                if (str(path.relative_to(root)), module) == FRONT_DOOR:
                    continue
                if layer_of(module) in forbidden and module not in ALLOWED.get(layer, ()):
                    bad.append(f"{path.relative_to(root)}:{line} imports {module}")
    return bad


def test_every_import_points_down_a_layer():
    assert upward_imports(REPO_ROOT) == []


def test_the_check_finds_an_upward_import(tmp_path):
    for package, source in {"seqcast": "import numpy\n\ndef f():\n    from seqcast.storage.models import Models\n",
                            "storage": ("from seqcast.config.names import SAFE_NAME\n"
                                        "from seqcast.models.registry import REGISTRY\n"),
                            "tasks": "from seqcast.flows.forecast import forecast\n",
                            "flows": "from seqcast.deployments.forecast import deployment_specs\n",
                            "app": "from seqcast.flows.forecast import forecast\n"}.items():
        (tmp_path / package).mkdir()
        (tmp_path / package / "module.py").write_text(source)
    assert sorted(upward_imports(tmp_path)) == [
        "flows/module.py:1 imports seqcast.deployments.forecast",
        "seqcast/module.py:4 imports seqcast.storage.models",
        "storage/module.py:2 imports seqcast.models.registry",
        "tasks/module.py:1 imports seqcast.flows.forecast",
    ]

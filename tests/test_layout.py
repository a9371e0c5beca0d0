"""The installed layout: every module under seqcast's own name, so no folder elsewhere on sys.path shadows one."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT


def test_the_package_list_covers_every_folder_with_an_init():
    setuptools = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = setuptools["packages"]
    where = {name: REPO_ROOT / folder for name, folder in setuptools["package-dir"].items()}
    assert set(where) <= set(listed), "a mapped folder must also be in the packages list"
    found = set()
    for root, name in [(REPO_ROOT / "seqcast", "seqcast"), *((path, name) for name, path in where.items())]:
        for init in root.rglob("__init__.py"):
            if "__pycache__" not in init.parts:
                found.add(".".join([name, *init.parent.relative_to(root).parts]))
    assert {"seqcast.data", "seqcast.storage", "seqcast.app"} <= found  # the walk itself found rooms and mapped folders
    assert sorted(found - set(listed)) == [], "folders with an __init__.py missing from [tool.setuptools] packages"
    assert sorted(set(listed) - found) == [], "packages listed in [tool.setuptools] without an __init__.py"


def _started(argv: list[str], cwd: Path, log: Path) -> subprocess.Popen:
    with log.open("w") as out:
        return subprocess.Popen(argv, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)


@pytest.mark.integration
def test_a_real_dask_worker_imports_seqcast_past_a_storage_folder_in_its_local_directory(tmp_path):
    import distributed

    def imports_on_the_worker() -> dict:
        """Where the worker's own imports lead (its local directory is first on its sys.path); defined here, so
        that cloudpickle sends it by value to a worker that cannot import the tests."""
        import importlib.util
        import sys as worker_sys

        import seqcast.flows.forecast
        from seqcast.storage import Store

        shadow = importlib.util.find_spec("storage")
        return {"store": Store.__module__, "store_file": worker_sys.modules[Store.__module__].__file__,
                "forecast_file": seqcast.flows.forecast.__file__,
                "storage": list(shadow.submodule_search_locations) if shadow else None}

    local = tmp_path / "worker"
    (local / "storage").mkdir(parents=True)  # the worker's spill folder has this name, and sits on its sys.path
    scheduler_file = tmp_path / "scheduler.json"
    dask = str(Path(sys.executable).with_name("dask"))
    processes = [_started([dask, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                           "--scheduler-file", str(scheduler_file)], tmp_path, tmp_path / "scheduler.log")]
    try:
        processes.append(_started([dask, "worker", "--scheduler-file", str(scheduler_file), "--nthreads", "1",
                                   "--nworkers", "1", "--no-dashboard", "--local-directory", str(local)],
                                  tmp_path, tmp_path / "worker.log"))
        with distributed.Client(scheduler_file=str(scheduler_file), timeout=120) as client:
            client.wait_for_workers(1, timeout=120)
            (found,) = client.run(imports_on_the_worker).values()
    finally:
        for process in reversed(processes):
            process.terminate()
        for process in reversed(processes):
            process.wait(timeout=60)
    assert found["store"] == "seqcast.storage"
    assert Path(found["store_file"]) == REPO_ROOT / "storage" / "__init__.py"
    assert Path(found["forecast_file"]) == REPO_ROOT / "flows" / "forecast.py"
    # the shadow is real: a bare `import storage` on that worker finds a folder of the local directory
    assert found["storage"] and all(Path(p).is_relative_to(local) for p in found["storage"])


def test_ci_runs_every_tier_and_each_target_selects_tests():
    """`make test-slow` selects one tier alone: were it empty, pytest would end CI with exit code 5."""
    makefile, ci = (REPO_ROOT / "Makefile").read_text(), (REPO_ROOT / ".ci" / "run").read_text()
    assert "-m unit" in makefile.split("test-fast:")[1].split("\n\n")[0]
    assert "-m slow" in makefile.split("test-slow:")[1].split("\n\n")[0]
    assert ci.splitlines()[-2:] == ["make test", "make test-slow"]
    slow = [path.name for path in (REPO_ROOT / "tests").glob("test_*.py") if "@pytest.mark.slow\n" in path.read_text()]
    assert "test_workers.py" in slow


def test_a_test_has_the_tier_it_names_else_the_one_its_fixtures_imply_and_never_two():
    from types import SimpleNamespace

    from tests.conftest import tier_of

    def item(marks=(), fixtures=()):
        return SimpleNamespace(nodeid="tests/test_x.py::test_x", fixturenames=["tmp_path", *fixtures],
                               iter_markers=lambda: [SimpleNamespace(name=m) for m in ("parametrize", *marks)])

    assert tier_of(item()) == "unit"
    assert tier_of(item(fixtures=["home", "prefect_harness"])) == "integration"
    assert tier_of(item(fixtures=["s3_home"])) == "integration"
    assert tier_of(item(marks=["e2e"])) == "e2e"
    assert tier_of(item(marks=["slow"], fixtures=["prefect_server"])) == "slow"
    assert tier_of(item(marks=["integration"], fixtures=["prefect_harness"])) == "integration"
    with pytest.raises(pytest.UsageError, match=r"test_x is marked integration and slow: a test has one tier"):
        tier_of(item(marks=["slow", "integration"]))

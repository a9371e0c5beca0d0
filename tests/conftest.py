"""Shared fixtures: isolated SEQCAST_HOME / PREFECT_HOME per session, one Prefect test harness, tiny data."""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

_SESSION_DIR = Path(tempfile.mkdtemp(prefix="seqcast-tests-"))
# Set before Prefect is imported anywhere, so its settings see them.
os.environ["PREFECT_HOME"] = str(_SESSION_DIR / "prefect")
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["DO_NOT_TRACK"] = "1"
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
os.environ["SEQCAST_HOME"] = str(_SESSION_DIR / "seqcast-default")

# Hypothesis: a small reproducible run by default; HYPOTHESIS_PROFILE=long (make test-fuzz) searches much longer.
# No deadline: the first examples pay for Prefect's and TensorFlow's start-up.
settings.register_profile("default", max_examples=120, deadline=None, derandomize=True, database=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("long", max_examples=3000, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

REPO_ROOT = Path(__file__).resolve().parent.parent

# A few hundred series and one or two epochs: enough to exercise every stage on 2 cores.
TINY = dict(n_series=240, n_train=160, n_valid=40, n_test=40, epochs=2, batch_size=32)


def printed_table(out: str) -> list[dict[str, str]]:
    """The rows of the one table ``seqcast`` printed (``format_table``: a header, dashes, rows, ``(N rows)``)."""
    lines = out.splitlines()
    rule = next(i for i, line in enumerate(lines) if line.startswith("---"))
    columns = lines[rule - 1].split()
    end = next(i for i in range(rule + 1, len(lines)) if lines[i].startswith("("))
    table = [dict(zip(columns, line.split(), strict=True)) for line in lines[rule + 1:end]]
    assert lines[end] == f"({len(table)} row{'s' if len(table) != 1 else ''})"
    return table


@pytest.fixture(scope="session")
def prefect_harness():
    """One ephemeral Prefect API (SQLite in a temp dir) for every flow test of the session."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """A fresh SEQCAST_HOME for one test."""
    path = tmp_path / "seqcast-home"
    monkeypatch.setenv("SEQCAST_HOME", str(path))
    return path


@pytest.fixture(scope="session")
def s3_server():
    """A real S3 API (moto's server on a loopback port) with one bucket, for the whole session."""
    from tests.s3_server import running_s3

    with running_s3() as server:
        yield server


@pytest.fixture
def s3_home(s3_server, tmp_path, monkeypatch, request) -> str:
    """A fresh SEQCAST_HOME under its own prefix of the S3 server's bucket, with this machine's cache in
    ``tmp_path``."""
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    url = s3_server.url(re.sub(r"[^A-Za-z0-9_-]", "-", f"{request.node.name}-{tmp_path.name}"))
    monkeypatch.setenv("SEQCAST_HOME", url)
    monkeypatch.setenv("SEQCAST_CACHE", str(tmp_path / "cache"))
    return url


@pytest.fixture(scope="session")
def prefect_server():
    """A real Prefect server process on a free local port, shared by the multi-process tests."""
    from tests.prefect_server import start_server, stop_server

    server = start_server(_SESSION_DIR / "prefect-server")
    yield server
    stop_server(server)


# Each test is in exactly one tier (markers registered in pyproject.toml; docs/development.md): the tier the test or
# its module names (`slow`, `integration`, `e2e`), else `integration` when it uses a Prefect API or a server process,
# else `unit`: the core's plain functions, which `make test-fast` runs alone.
TIERS = ("unit", "integration", "e2e", "slow")
INTEGRATION_FIXTURES = frozenset({"prefect_harness", "prefect_server", "s3_server", "s3_home"})


def tier_of(item: pytest.Item) -> str:
    """The one tier of a test; a UsageError when it names two."""
    named = {mark.name for mark in item.iter_markers() if mark.name in TIERS}
    if len(named) > 1:  # a slow test in a module marked integration would also run under -m integration
        raise pytest.UsageError(f"{item.nodeid} is marked {' and '.join(sorted(named))}: a test has one tier")
    if named:
        return named.pop()
    return "integration" if INTEGRATION_FIXTURES & set(item.fixturenames) else "unit"


@pytest.hookimpl(tryfirst=True)  # before pytest's -m reads the tiers, and before pytest-xdist reads the groups
def pytest_collection_modifyitems(items):
    """Give every test its tier. Keep the tests that share a module-scoped fixture (a served deployment, a trained
    run) on one pytest-xdist worker, so that fixture is built once; every other test goes to whichever worker is
    free (``--dist loadgroup``)."""
    for item in items:
        tier = tier_of(item)
        if not item.get_closest_marker(tier):
            item.add_marker(tier)
        if any(defs[-1].scope == "module" for defs in item._fixtureinfo.name2fixturedefs.values()):
            item.add_marker(pytest.mark.xdist_group(item.module.__name__))


def results_db(home: Path):
    """A DuckDB connection over a local home's results tables and views, as ``seqcast sql`` reads them."""
    from seqcast.storage.results import Results
    from seqcast.storage.table_queries import connect

    return connect(Results(home).tables)


def table_versions(home: Path) -> dict[str, int | None]:
    """Each results table's version (None for one not written yet): unchanged when nothing was recorded."""
    from seqcast.storage.tables import Tables

    return {name: table.version() if table else None for name, table in Tables(home).open_all().items()}

"""The ``seqcast`` command as a user runs it: a fresh process, the user's environment."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT
from tests.series_files import COLUMNS, daily_series, write

pytestmark = pytest.mark.e2e

TELEMETRY = ("DO_NOT_TRACK", "PREFECT_SERVER_ANALYTICS_ENABLED")

# Runs the command in this process, then prints what it left in the environment (what the servers it started saw).
COMMAND_THEN_ENVIRONMENT = f"""
import os, sys
from seqcast.app.cli import main
code = main(sys.argv[1:])
print("ENV", *(os.environ.get(name) for name in {TELEMETRY!r}))
sys.exit(code)
"""


def seqcast(argv: list[str], env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", COMMAND_THEN_ENVIRONMENT, *argv], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def newcomers_environment(tmp_path) -> dict[str, str]:
    """The environment of someone who never heard of Prefect's telemetry switches."""
    env = {k: v for k, v in os.environ.items() if k not in TELEMETRY and not k.startswith(("PREFECT_", "SEQCAST_"))}
    return {**env, "PREFECT_HOME": str(tmp_path / "prefect"), "SEQCAST_HOME": str(tmp_path / "seqcast")}


def test_a_newcomers_command_starts_its_server_without_telemetry_or_a_traceback(tmp_path):
    path = write(daily_series(n_series=2), tmp_path / "sales.csv")
    done = seqcast(["ingest", str(path), "--id-column", COLUMNS["id_column"], "--time-column",
                    COLUMNS["time_column"], "--value-column", COLUMNS["value_column"]], newcomers_environment(tmp_path))
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    assert "Starting temporary server" in done.stderr + done.stdout  # the command did start a server of its own
    assert done.stdout.splitlines()[-1] == "ENV 1 false"


def test_a_users_own_telemetry_setting_wins(tmp_path):
    env = {**newcomers_environment(tmp_path), "DO_NOT_TRACK": "0", "PREFECT_SERVER_ANALYTICS_ENABLED": "true"}
    done = seqcast(["variants"], env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "ENV 0 true"


def test_automations_are_refused_without_a_prefect_server_to_keep_them(tmp_path):
    done = seqcast(["automations"], newcomers_environment(tmp_path))  # no PREFECT_API_URL: a temporary server
    assert done.returncode == 2
    assert "seqcast: error: set PREFECT_API_URL to the Prefect server the workers use" in done.stderr
    assert "Traceback" not in done.stderr and "temporary server" not in done.stderr  # none was started

"""A real Prefect server process on a free loopback port, for tests that span several OS processes; API wait helpers,
and pointing this process at another API."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


@dataclass
class PrefectServer:
    """A running server: its API URL, the PREFECT_HOME it uses, and an environment for client processes."""

    api_url: str
    home: Path
    process: subprocess.Popen
    auth_string: str | None = None  # the credentials the server requires (PREFECT_SERVER_API_AUTH_STRING), if any

    def client_env(self, **extra: str) -> dict[str, str]:
        """Environment for a child process that talks to this server (not to an ephemeral one)."""
        env = {**os.environ, "PREFECT_API_URL": self.api_url, "PREFECT_HOME": str(self.home),
               "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
        env.pop("PREFECT_API_AUTH_STRING", None)
        if self.auth_string is not None:
            env["PREFECT_API_AUTH_STRING"] = self.auth_string
        env.update(extra)
        return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(home: Path, timeout_s: float = 120, auth_string: str | None = None) -> PrefectServer:
    """Start ``prefect server start`` on 127.0.0.1:<free port> and wait until its health check answers.

    ``auth_string``: the server refuses every API call without these credentials (its health check excepted).
    """
    home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "DO_NOT_TRACK": "1", "PREFECT_UI_ENABLED": "false"}
    env.pop("PREFECT_API_URL", None)
    env.pop("PREFECT_SERVER_API_AUTH_STRING", None)
    if auth_string is not None:
        env["PREFECT_SERVER_API_AUTH_STRING"] = auth_string
    log = open(home / "server.log", "wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port),
         "--no-ui", "--analytics-off", "--log-level", "WARNING"],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    api_url = f"http://127.0.0.1:{port}/api"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"prefect server exited with {process.returncode}: "
                               f"{(home / 'server.log').read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{api_url}/health", timeout=2) as response:
                if response.status == 200:
                    return PrefectServer(api_url, home, process, auth_string)
        except OSError:
            time.sleep(0.5)
    stop_server(PrefectServer(api_url, home, process))
    raise TimeoutError(f"prefect server on port {port} did not answer within {timeout_s} s")


def stop_server(server: PrefectServer) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()


def wait_for_deployments(names: list[str], process: subprocess.Popen, log: Path, timeout_s: float = 120) -> None:
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    deadline = time.monotonic() + timeout_s
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            assert process.poll() is None, f"seqcast serve exited: {log.read_text()[-3000:]}"
            try:
                for name in names:
                    client.read_deployment_by_name(name)
                time.sleep(2)  # the runner polls for runs once its deployments are registered
                return
            except ObjectNotFound:
                time.sleep(0.5)
    raise TimeoutError(f"deployments {names} not registered within {timeout_s} s: {log.read_text()[-3000:]}")


def task_run_states(flow_run_id, count: int, timeout_s: float = 60) -> list[tuple[str, str]]:
    """Sorted (task name, state name) of a flow run's task runs, once ``count`` of them are in a final state.

    Task runs reach the API through Prefect's event stream, a moment after their flow run returns (longer on a
    busy machine), so one read right after the run can see some of them, or none.
    """
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    deadline = time.monotonic() + timeout_s
    with get_client(sync_client=True) as client:
        while True:
            runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
            states = sorted((r.name.rsplit("-", 1)[0], r.state.name if r.state else "") for r in runs)
            settled = len(runs) == count and all(r.state is not None and r.state.is_final() for r in runs)
            if settled or len(runs) > count or time.monotonic() > deadline:
                return states
            time.sleep(0.5)


def drain_events_worker() -> None:
    """Send what Prefect's events worker holds and stop it, so the next one starts for the API URL set now.

    The events worker, through which task runs reach the API, keeps the API URL it started with, whatever the
    settings say later (Prefect's log worker is keyed by URL, the events worker is not). Without this, flow runs
    against the test harness after flow runs against a real server in the same process send their task runs to
    that server, and the harness never sees them.
    """
    from prefect.events.worker import EventsWorker

    EventsWorker.drain_all(timeout=30)


@contextlib.contextmanager
def prefect_api(api_url: str, auth_string: str | None = None) -> Iterator[None]:
    """Point this process's Prefect client, and its events worker, at ``api_url`` (with these credentials) for the
    block."""
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

    drain_events_worker()
    try:
        with temporary_settings({PREFECT_API_URL: api_url, PREFECT_API_AUTH_STRING: auth_string}):
            yield
    finally:
        drain_events_worker()


def start_worker(server: PrefectServer, pool: str, folder: Path, name: str, limit: int = 1,
                 **env: str) -> subprocess.Popen:
    """Start ``prefect worker start`` for ``pool`` in ``folder`` (its working directory and log), as on a host of
    its own: its own process group, sharing only the server (and what ``env`` names) with other workers.

    ``limit``: flow runs it runs at once. It polls every 2 s rather than Prefect's 10, so tests wait less.
    """
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "worker.log", "wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "prefect", "worker", "start", "--pool", pool, "--name", name,
             "--limit", str(limit)],
            cwd=folder, env=server.client_env(PREFECT_WORKER_QUERY_SECONDS="2", **env),
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def stop_process(process: subprocess.Popen, timeout_s: float = 30) -> None:
    """Stop a child started in its own session, and what it started in that session."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()

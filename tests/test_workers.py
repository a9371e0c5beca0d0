"""Workers on several hosts: two process workers of the prefect.yaml pool, each in a folder of its own, sharing only
the Prefect API (which requires credentials) and the store (an S3 bucket on moto's server).

A sweep spreads over both workers and lands every result once; a worker lost in the middle of a training (SIGKILL, as
a host that dies) has its run marked Crashed by the project's automations and resumed on the other; the store's
credentials appear in no parameter, log, artifact, record or row. The cluster tests are slow (minutes: real
processes, a real server, heartbeats every 30 s) and run with ``make test-slow``.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import secrets
import signal
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from seqcast.deployments.automations import CRASH_AUTOMATION, RETRY_AUTOMATION, CrashPolicy, crash_automations
from tests.conftest import REPO_ROOT, TINY
from tests.prefect_server import PrefectServer, prefect_api, start_server, start_worker, stop_process, stop_server
from tests.s3_server import SECRET as STORE_SECRET

POOL = "seqcast-process"
SWEPT = ["naive", "linear", "simple_rnn", "deep_rnn_dense"]
TINY_RUN = {**TINY, "epochs": 1, "jit_compile": False}
CRASH_AFTER_S = 60  # two heartbeats: the shortest window `seqcast automations` accepts


# --- the automations, without a server --------------------------------------------------------------------------

def test_crash_automations_match_silent_seqcast_runs_and_retry_a_bounded_number_of_times():
    crash, retry = crash_automations(CrashPolicy(crash_after_s=120, retries=3))
    assert (crash.name, retry.name) == (CRASH_AUTOMATION, RETRY_AUTOMATION)
    assert crash.trigger.posture == "Proactive" and crash.trigger.within.total_seconds() == 120
    assert crash.trigger.after == {"prefect.flow-run.heartbeat"}
    assert {"prefect.flow-run.heartbeat", "prefect.flow-run.Completed"} <= crash.trigger.expect
    assert crash.actions[0].state == "CRASHED"
    assert retry.trigger.expect == {"prefect.flow-run.Crashed"} and retry.trigger.posture == "Reactive"
    assert retry.trigger.match.model_dump()["prefect.run-count"] == ["1", "2", "3"]  # a 4th crash stays Crashed
    assert (retry.actions[0].state, retry.actions[0].name) == ("SCHEDULED", "AwaitingRetry")
    for automation in (crash, retry):  # only seqcast's runs: other flows on a shared server are not touched
        assert automation.trigger.match_related.model_dump() == {"prefect.resource.role": "tag",
                                                                 "prefect.resource.id": "prefect.tag.seqcast"}
    assert crash_automations(CrashPolicy(retries=0))[1].enabled is False


@pytest.mark.parametrize("args, message", [
    (["--crash-after", "45"], "--crash-after must be at least 60 s (two heartbeats of 30 s), got 45"),
    (["--retries", "-1"], "--retries must be at least 0, got -1"),
])
def test_cli_automations_refuses_bad_values_before_contacting_prefect(capsys, args, message):
    from seqcast.app.cli import main as cli

    assert cli(["automations", *args]) == 2
    assert message in capsys.readouterr().err


def test_workers_send_heartbeats_often_enough_for_the_crash_automation():
    import yaml

    from seqcast.deployments.automations import HEARTBEAT_S

    declared = yaml.safe_load((REPO_ROOT / "prefect.yaml").read_text())["deployments"]
    for deployment in declared:
        env = deployment["work_pool"]["job_variables"]["env"]
        assert int(env["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"]) == HEARTBEAT_S <= CrashPolicy().crash_after_s / 2


# --- two workers on a real server --------------------------------------------------------------------------------

@dataclass
class Cluster:
    """A Prefect server with API auth, the store's environment, and the workers (name -> process, folder)."""

    server: PrefectServer
    store_env: dict[str, str]
    client_folder: Path
    workers: dict[str, tuple[subprocess.Popen, Path]] = field(default_factory=dict)

    def env(self, **extra: str) -> dict[str, str]:
        """The environment of a client of this setup (the CLI, a worker): the server, its credentials, the store."""
        # PYTHONPATH: this checkout's code, from whichever folder a client starts (a worktree beside the install)
        return self.server.client_env(**self.store_env, **self.local("client"), PYTHONPATH=str(REPO_ROOT), **extra)

    def local(self, host: str) -> dict[str, str]:
        """A host's own disk: its cache of the store."""
        folder = self.client_folder.parent / host
        return {"SEQCAST_CACHE": str(folder / "cache")}

    def seqcast(self, *args: str, timeout: float = 600) -> str:
        done = subprocess.run([sys.executable, "-m", "seqcast.app.cli", *args], cwd=self.client_folder, env=self.env(),
                              capture_output=True, text=True, timeout=timeout, check=False)
        assert done.returncode == 0, f"seqcast {' '.join(args)}: {done.stdout[-3000:]}{done.stderr[-3000:]}"
        return done.stdout

    def api(self):
        return prefect_api(self.server.api_url, self.server.auth_string)

    def ran_by(self, flow_run_id: str) -> set[str]:
        """The workers that ran a try of the flow run. Every worker that polls at that moment logs that it submits
        the run; all but the one that gets it then log that the server aborted their submission."""
        ran = set()
        for name, (_, folder) in self.workers.items():
            log = (folder / "worker.log").read_text(errors="replace")
            if (log.count(f"Worker '{name}' submitting flow run '{flow_run_id}'")
                    > log.count(f"Aborted submission of flow run '{flow_run_id}'")):
                ran.add(name)
        return ran


@pytest.fixture(scope="module")
def store_env(s3_server) -> dict[str, str]:
    """The store every worker and client shares, as environment variables: a prefix of the S3 server's bucket and
    the credentials that reach it (its secret key must leak nowhere)."""
    return {"SEQCAST_HOME": s3_server.url(f"workers-{secrets.token_hex(4)}"), **s3_server.env()}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, store_env):
    """A server with credentials, the prefect.yaml deployments of SWEPT, the project's automations, and two
    workers, each in an empty folder of its own with its own scratch space and results database."""
    root = tmp_path_factory.mktemp("cluster")
    server = start_server(root / "prefect", auth_string=f"seqcast:{secrets.token_urlsafe(16)}")
    cluster = Cluster(server, store_env, root / "client")
    cluster.client_folder.mkdir()
    try:
        env = cluster.env()

        def prefect(*args: str) -> None:
            done = subprocess.run([sys.executable, "-m", "prefect", *args], cwd=REPO_ROOT, env=env,
                                  capture_output=True, text=True, timeout=300, check=False)
            assert done.returncode == 0, f"prefect {' '.join(args)}: {done.stdout[-2000:]}{done.stderr[-2000:]}"

        prefect("work-pool", "create", POOL, "--type", "process", "--overwrite")
        prefect("--no-prompt", "deploy", *[arg for name in SWEPT for arg in ("--name", name)])
        cluster.seqcast("automations", "--crash-after", str(CRASH_AFTER_S), "--retries", "2")
        for name in ("worker-a", "worker-b"):
            folder = root / name
            # a host's own disk: its scratch space, its cache and its own results database; one TensorFlow thread
            # each, as the two "hosts" share this machine's cores
            cluster.workers[name] = (start_worker(
                server, POOL, folder, name, **store_env, **cluster.local(name), PYTHONPATH=str(REPO_ROOT),
                TMPDIR=str(folder / "tmp"), TF_NUM_INTRAOP_THREADS="1", TF_NUM_INTEROP_THREADS="1"), folder)
            (folder / "tmp").mkdir()
        time.sleep(5)  # both workers have polled the pool
        yield cluster
    finally:
        for process, _ in cluster.workers.values():
            stop_process(process)
        stop_server(server)


def flow_run_ids_of_sweep(cluster: Cluster) -> dict[str, str]:
    """variant -> flow run id of every forecast run the sweeps so far triggered."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags

    with cluster.api(), get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=["sweep"])))
    return {run.parameters["variant"]: str(run.id) for run in runs}


def store_runs(cluster: Cluster) -> list[dict]:
    """Every ``runs`` row in the store's tables."""
    from seqcast.storage.home import current_store

    with pytest.MonkeyPatch.context() as env:
        for name, value in {**cluster.store_env, **cluster.local("client")}.items():
            env.setenv(name, value)
        return current_store().results.frame("SELECT * FROM runs").to_dict("records")


def database_rows(cluster: Cluster, sql: str) -> list[dict]:
    """Query the store's results tables from this client, as a user does."""
    return json.loads(cluster.seqcast("sql", sql, "--format", "json"))


@pytest.mark.slow
def test_a_sweep_spreads_over_both_workers_and_lands_every_result_once(cluster):
    options = [f"--{k.replace('_', '-')}={v}" for k, v in TINY_RUN.items() if k != "jit_compile"]
    out = cluster.seqcast("sweep", *[a for v in SWEPT for a in ("--variant", v)], *options, "--no-jit-compile")
    assert all(variant in out for variant in SWEPT)
    runs = flow_run_ids_of_sweep(cluster)
    assert sorted(runs) == sorted(SWEPT)
    ran_by = {variant: cluster.ran_by(flow_run_id) for variant, flow_run_id in runs.items()}
    assert all(len(workers) == 1 for workers in ran_by.values()), ran_by  # each run ran once, on one worker
    assert set.union(*ran_by.values()) == {"worker-a", "worker-b"}, ran_by  # and both workers took runs

    recorded = [r for r in store_runs(cluster) if r["flow_run_id"] in runs.values()]
    assert sorted((r["variant"], r["status"]) for r in recorded) == sorted((v, "completed") for v in SWEPT)
    rows = database_rows(cluster, "SELECT variant, flow_run_id FROM runs")
    assert sorted((r["variant"], r["flow_run_id"]) for r in rows if r["flow_run_id"] in runs.values()) == sorted(
        runs.items())


def wait_for(predicate, what: str, timeout_s: float, every_s: float = 1):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every_s)
    raise TimeoutError(f"{what}: not within {timeout_s} s")


def run_logs(flow_run_id: str) -> list[str]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    logs, only_this_run = [], LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id]))
    with get_client(sync_client=True) as client:
        while batch := client.read_logs(log_filter=only_this_run, limit=200, offset=len(logs)):  # 200 at most a call
            logs += batch
    return [log.message for log in logs]


@pytest.mark.slow
def test_a_run_whose_worker_is_lost_is_crashed_then_resumed_on_the_other_worker(cluster):
    from prefect.client.orchestration import get_client

    epochs = 30
    parameters = {**TINY_RUN, "n_series": 2000, "n_train": 1600, "n_valid": 200, "n_test": 200,
                  "epochs": epochs, "patience": epochs, "batch_size": 16, "seed": 5}
    with cluster.api():
        with get_client(sync_client=True) as client:
            deployment = client.read_deployment_by_name("forecast/simple_rnn")
            flow_run = client.create_flow_run_from_deployment(deployment.id, parameters=parameters)
        flow_run_id = str(flow_run.id)
        # the run trains and has backed up an epoch (the first epoch's upload ends before the second epoch starts):
        # then its host is lost
        wait_for(lambda: any("simple_rnn epoch 2/" in m for m in run_logs(flow_run_id)), "the second epoch", 240)
        (lost,) = cluster.ran_by(flow_run_id)
        with get_client(sync_client=True) as client:
            pid = int(str(client.read_flow_run(flow_run.id).infrastructure_pid).rsplit(":", 1)[-1])
        worker, _ = cluster.workers[lost]
        # a lost host takes the worker and the flow run's process (a session of its own) at the same instant
        for group in (worker.pid, pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGKILL)
        worker.wait()

        def final():
            with get_client(sync_client=True) as client:
                run = client.read_flow_run(flow_run.id)
            return run if run.state is not None and run.state.is_final() and run.state.name != "Crashed" else None

        flow_run = wait_for(final, "the run, crashed and scheduled again, to finish", 480, every_s=2)
        with get_client(sync_client=True) as client:
            states = client.read_flow_run_states(flow_run.id)
        history = [s.name for s in states]
        messages = wait_for(lambda: (lambda m: m if any("resumes after epoch" in x for x in m) else None)(
            run_logs(flow_run_id)), "the resumed try's logs", 60)

    assert flow_run.state.name == "Completed", flow_run.state.message
    assert "Crashed" in history and "AwaitingRetry" in history, history  # Prefect's own states, not ours
    crashed_at = history.index("Crashed")
    assert history[crashed_at + 1] == "AwaitingRetry" and history[-1] == "Completed"
    assert states[crashed_at].message == f"no heartbeat for {CRASH_AFTER_S} s: its worker is gone"  # the automation
    assert cluster.ran_by(flow_run_id) == set(cluster.workers)  # the live worker ran the second try
    assert any("simple_rnn resumes after epoch" in m for m in messages)  # from the lost try's backup
    resumed = int(next(m for m in messages if "resumes after epoch" in m).split("resumes after epoch ")[1].split()[0])
    assert resumed >= 1
    # the second try trained only the epochs after the stored backup: none the backup holds was trained again. The
    # lost try's epochs after its last upload (one every SEQCAST_BACKUP_INTERVAL) are trained twice, the rest once.
    trained = [sum(f"simple_rnn epoch {e}/{epochs} " in m for m in messages) for e in range(1, epochs + 1)]
    again = trained[resumed:].count(2)
    assert trained == [1] * resumed + [2] * again + [1] * (epochs - resumed - again), trained
    recorded = [r for r in store_runs(cluster) if r["flow_run_id"] == flow_run_id]
    assert [(r["status"], r["epochs"]) for r in recorded] == [("completed", epochs)]
    assert database_rows(cluster, f"SELECT epoch FROM history WHERE run_id = '{flow_run_id}' ORDER BY epoch") == [
        {"epoch": e} for e in range(1, epochs + 1)]


@pytest.mark.slow
def test_the_server_refuses_a_client_without_its_credentials(cluster):
    import base64

    def status(authorization: str | None) -> int:
        request = urllib.request.Request(f"{cluster.server.api_url}/flow_runs/filter", data=b"{}", method="POST",
                                         headers={"Content-Type": "application/json"})
        if authorization:
            request.add_header("Authorization", authorization)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status
        except urllib.error.HTTPError as exc:
            return exc.code

    def basic(text: str) -> str:
        return "Basic " + base64.b64encode(text.encode()).decode()

    assert status(None) == 401
    assert status(basic("seqcast:wrong")) == 401
    assert status(basic(cluster.server.auth_string)) == 200
    # the CLI without them is refused too, and says so
    env = cluster.env()
    env.pop("PREFECT_API_AUTH_STRING")
    done = subprocess.run([sys.executable, "-m", "prefect", "work-pool", "ls"], cwd=cluster.client_folder, env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode != 0 and "401" in done.stdout + done.stderr


def places_holding(cluster: Cluster, text: str) -> set[str]:
    """Which of the outputs of this setup hold ``text``: the flow runs' parameters, their logs and artifacts in the
    Prefect API, the objects of the store (every value of its Parquet records), every host's cache and results
    database, the workers' own logs."""
    import pyarrow
    import pyarrow.parquet as pq
    from prefect.client.orchestration import get_client

    from seqcast.storage.objects import ObjectStore

    def readable(name: str, data: bytes) -> str:  # every value of a Parquet file or of a tar's members, else text
        if name.endswith(".parquet"):
            return json.dumps(pq.read_table(pyarrow.BufferReader(data)).to_pylist(), default=str)
        if name.endswith(".tar"):
            with tarfile.open(fileobj=io.BytesIO(data)) as tar:
                return "\n".join(readable(m.name, tar.extractfile(m).read()) for m in tar.getmembers() if m.isfile())
        return data.decode("utf-8", errors="replace")

    def every(read) -> list:  # the API answers at most 200 at a time
        offset, found = 0, []
        while batch := read(limit=200, offset=offset):
            found += batch
            offset += len(batch)
        return found

    found = set()
    with cluster.api(), get_client(sync_client=True) as client:
        if any(text in json.dumps(r.parameters, default=str) or text in json.dumps(r.job_variables or {}, default=str)
               for r in every(client.read_flow_runs)):
            found.add("parameters")
        if any(text in log.message for log in every(client.read_logs)):
            found.add("logs")
        if any(text in json.dumps(a.data, default=str) or text in (a.description or "")
               for a in every(client.read_artifacts)):
            found.add("artifacts")
    with pytest.MonkeyPatch.context() as env:
        for name, value in cluster.store_env.items():
            env.setenv(name, value)
        store = ObjectStore(cluster.store_env["SEQCAST_HOME"])
        keys = list(store.list(""))
        assert any(key.startswith("tables/") for key in keys)  # the listing sees the store's objects
        if any(text in readable(key, store.get_bytes(key)) for key in keys):
            found.add("store")
    hosts = [cluster.client_folder.parent / host for host in ("client", *cluster.workers)]
    if any(text in readable(path.name, path.read_bytes()) for host in hosts for path in (host / "cache").rglob("*")
           if path.is_file()):
        found.add("caches")
    with pytest.MonkeyPatch.context() as env:
        for name, value in {**cluster.store_env, **cluster.local("client")}.items():
            env.setenv(name, value)
        from seqcast.storage.home import current_store
        from seqcast.storage.schemas import TABLES

        results = current_store().results
        if any(text in json.dumps(results.query(f"SELECT * FROM {t}")[1], default=str) for t in TABLES):
            found.add("results tables")
    if any(text in (folder / "worker.log").read_text(errors="replace") for _, folder in cluster.workers.values()):
        found.add("worker logs")
    return found


@pytest.mark.slow
def test_the_store_credentials_appear_in_no_output(cluster):
    runs = flow_run_ids_of_sweep(cluster)
    if not runs:  # run alone: put something in every output first
        test_a_sweep_spreads_over_both_workers_and_lands_every_result_once(cluster)
        runs = flow_run_ids_of_sweep(cluster)
    # the search finds what is there: a run's id is in its logs, the leaderboard artifact, its record and its row,
    # and a swept variant's name in the sweep's parameters
    assert places_holding(cluster, runs["linear"]) >= {"logs", "artifacts", "store", "caches", "results tables"}
    assert "parameters" in places_holding(cluster, "deep_rnn_dense")
    assert places_holding(cluster, STORE_SECRET) == set()

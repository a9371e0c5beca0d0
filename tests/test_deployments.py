"""Deployments: every definition loads; served runs on a real Prefect server: results, artifacts, retry, bad input.

The served tests share one ``seqcast serve`` process (a subprocess, like production) and one SEQCAST_HOME.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from hypothesis import assume, given, settings
from pydantic import ValidationError

from seqcast.config.params import ForecastParams
from seqcast.deployments.forecast import deployment_specs, forecast_deployments, nightly_cron
from seqcast.flows.execution import available_cores
from seqcast.flows.sweep import LEADERBOARD_KEY, sweep  # imports Prefect now, not first under a test's capsys
from seqcast.models.registry import REGISTRY
from seqcast.storage import Store
from tests.conftest import REPO_ROOT, TINY, results_db
from tests.prefect_server import prefect_api, task_run_states, wait_for_deployments
from tests.test_fuzz_params import hostile

TINY_SERVED = {**TINY, "epochs": 1, "jit_compile": False}  # no XLA compile: seconds matter on 2 cores


def test_every_deployment_definition_loads():
    specs = deployment_specs()
    assert [s.name for s in specs] == list(REGISTRY)
    assert len({s.cron for s in specs}) == len(specs)  # staggered: no two variants start together
    runner_deployments = forecast_deployments()
    for spec, deployment in zip(specs, runner_deployments, strict=True):
        variant = REGISTRY[spec.name]
        assert deployment.name == spec.name and deployment.parameters == {"variant": spec.name}
        ForecastParams(**deployment.parameters)
        horizon = f"horizon-{variant.horizon}" if variant.horizon else "horizon-dataset"
        assert set(deployment.tags) == {"seqcast", horizon, f"family-{variant.family}"}
        assert [s.schedule.cron for s in deployment.schedules] == [spec.cron]
        module, name = deployment.entrypoint.rsplit(".", 1)
        assert getattr(importlib.import_module(module), name).name == "forecast"

    # prefect.yaml (work pool) declares exactly the same deployments
    declared = [d for d in yaml.safe_load((REPO_ROOT / "prefect.yaml").read_text())["deployments"]
                if d["entrypoint"] == "flows/forecast.py:forecast"]  # the monitor's: tests/test_live_scoring.py
    assert [d["name"] for d in declared] == [s.name for s in specs]
    for spec, d in zip(specs, declared, strict=True):
        path, name = d["entrypoint"].split(":")
        assert (REPO_ROOT / path).is_file() and name == "forecast"
        ForecastParams(**d["parameters"])
        assert (d["parameters"], d["tags"], d["schedules"][0]["cron"], d["schedules"][0]["timezone"]) == (
            spec.parameters, spec.tags, spec.cron, spec.timezone)
        assert d["work_pool"]["name"] == "seqcast-process"


def test_schedule_comes_from_configuration(monkeypatch):
    monkeypatch.setenv("SEQCAST_SCHEDULE_START", "23:55")
    monkeypatch.setenv("SEQCAST_SCHEDULE_TIMEZONE", "Europe/Berlin")
    monkeypatch.setenv("SEQCAST_SCHEDULE_PAUSED", "1")
    naive, linear = deployment_specs(["naive", "linear"])
    assert (naive.cron, linear.cron, linear.timezone, linear.paused) == ("55 23 * * *", "5 0 * * *",
                                                                         "Europe/Berlin", True)
    (deployment,) = forecast_deployments(["linear"])
    assert deployment.schedules[0].active is False and deployment.schedules[0].schedule.timezone == "Europe/Berlin"
    assert nightly_cron(2, 1, 0, 10) == "20 1 * * *"
    monkeypatch.setenv("SEQCAST_SCHEDULE_START", "25:00")
    with pytest.raises(ValueError, match="SEQCAST_SCHEDULE_START=.25:00.: must be a time of day HH:MM"):
        deployment_specs()
    monkeypatch.delenv("SEQCAST_SCHEDULE_START")
    with pytest.raises(ValueError, match="unknown variant 'nope'"):
        deployment_specs(["nope"])


def test_a_schedule_switched_off_stays_off_when_served_again(prefect_harness, monkeypatch):
    """Serving applies the deployments again; a schedule someone switched off in the UI must not come back on."""
    from prefect.client.orchestration import get_client

    from seqcast.deployments.forecast import schedules_switched_off

    def served_schedules():  # what `seqcast serve` applies, then the schedules the server holds
        (deployment,) = forecast_deployments(["naive_10"], switched_off=schedules_switched_off(["forecast/naive_10"]))
        deployment_id = deployment.apply()
        with get_client(sync_client=True) as client:
            return deployment_id, sorted((s.schedule.cron, s.active, s.id)
                                         for s in client.read_deployment_schedules(deployment_id))

    monkeypatch.setenv("SEQCAST_SCHEDULE_START", "03:00")
    deployment_id, [(cron, active, schedule_id)] = served_schedules()
    assert (cron, active) == ("50 3 * * *", True)  # naive_10 is the 6th variant: 03:00 + 5 x 10 min
    with get_client(sync_client=True) as client:
        client.update_deployment_schedule(deployment_id, schedule_id, active=False)  # the UI's toggle
    assert schedules_switched_off(["forecast/naive_10", "forecast/never-deployed"]) == {
        ("forecast/naive_10", "50 3 * * *", "UTC")}
    assert [s[:2] for s in served_schedules()[1]] == [("50 3 * * *", False)]
    assert [s[:2] for s in served_schedules()[1]] == [("50 3 * * *", False)]  # and on every later start
    monkeypatch.setenv("SEQCAST_SCHEDULE_START", "05:00")  # a schedule moved to another time is a new one
    assert [s[:2] for s in served_schedules()[1]] == [("50 5 * * *", True)]


def test_cli_serve_and_sweep_reject_bad_input_before_contacting_prefect(capsys, monkeypatch):
    from seqcast.app.cli import main as cli

    assert cli(["serve", "--variant", "nope"]) == 2
    assert "unknown variant 'nope'; valid variants: naive" in capsys.readouterr().err
    assert cli(["serve", "--training-slots", "0"]) == 2
    assert "--training-slots must be at least 1, got 0" in capsys.readouterr().err
    monkeypatch.setenv("SEQCAST_TRAINING_SLOTS", "two")
    assert cli(["serve"]) == 2
    assert "SEQCAST_TRAINING_SLOTS='two': Input should be a valid integer" in capsys.readouterr().err
    monkeypatch.delenv("SEQCAST_TRAINING_SLOTS")
    assert cli(["sweep", "--variant", "linear", "--epochs", "-1"]) == 2
    assert "epochs: Input should be greater than or equal to 1" in capsys.readouterr().err


@pytest.mark.slow
def test_training_limit_of_one_does_not_deadlock_iterative(prefect_harness, home, monkeypatch):
    """iterative_10 trains its base model in a subflow: with one training slot that must still finish."""
    from prefect.client.orchestration import get_client

    from seqcast.config.names import TRAINING_LIMIT
    from seqcast.flows.execution import ensure_training_limit
    from seqcast.flows.forecast import forecast

    monkeypatch.setenv("SEQCAST_TRAINING_SLOTS", "1")
    assert ensure_training_limit() == 1
    result = forecast(variant="iterative_10", **{**TINY_SERVED, "seed": 11})
    assert result["model_path"] and rows(home, "SELECT count(*) FROM runs") == [(2,)]  # base + iterative
    with get_client(sync_client=True) as client:
        limit = client.read_global_concurrency_limit_by_name(TRAINING_LIMIT)
    assert (limit.limit, limit.active_slots) == (1, 0)  # the base training took its slot and gave it back


# --- served deployments on a real Prefect server ---------------------------------------------------------------

@pytest.fixture(scope="module")
def served(prefect_server, tmp_path_factory):
    """``seqcast serve`` for naive and linear in a subprocess; yields (server, SEQCAST_HOME, fault marker path)."""
    home = tmp_path_factory.mktemp("served") / "seqcast-home"
    marker = home.parent / "fail-once"
    env = prefect_server.client_env(SEQCAST_HOME=str(home), SEQCAST_TEST_FAIL_ONCE=str(marker),
                                    SEQCAST_TRAINING_SLOTS="1")
    log = home.parent / "serve.log"
    with open(log, "wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "seqcast.app.cli", "serve", "--variant", "naive",
                                    "--variant", "linear", "--no-schedules"], cwd=REPO_ROOT, env=env,
                                   stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        with prefect_api(prefect_server.api_url):
            wait_for_deployments(["forecast/naive", "forecast/linear"], process, log)
            yield prefect_server, home, marker
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def run_deployment_and_wait(name: str, parameters: dict, timeout_s: float = 240):
    """Trigger a deployment by name through the client and return the flow run once it is final."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name(name)
        flow_run = client.create_flow_run_from_deployment(deployment.id, parameters=parameters)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            flow_run = client.read_flow_run(flow_run.id)
            if flow_run.state is not None and flow_run.state.is_final():
                return flow_run
            time.sleep(1)
    raise TimeoutError(f"{name} run {flow_run.id} not final within {timeout_s} s (state {flow_run.state})")


def rows(home: Path, sql: str, params=None):
    with results_db(home) as con:
        return con.execute(sql, params or []).fetchall()


def artifacts_of(flow_run_id) -> dict[str, list]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(
            any_=[flow_run_id])))
    by_type: dict[str, list] = {}
    for artifact in found:
        by_type.setdefault(artifact.type, []).append(artifact)
    return by_type


def test_served_deployment_run_records_results_and_artifacts(served):
    _, home, _ = served
    flow_run = run_deployment_and_wait("forecast/linear", TINY_SERVED)
    assert flow_run.state.name == "Completed", flow_run.state.message
    run_id = str(flow_run.id)
    assert flow_run.name.startswith("linear · ds-")
    assert rows(home, "SELECT variant, status, epochs FROM runs WHERE flow_run_id = ?", [run_id]) == [
        ("linear", "completed", 1)]
    valid_mse, naive_valid_mse = (rows(home, "SELECT value FROM metrics WHERE run_id = ? AND predictor = ? AND "
                                       "split = 'valid' AND metric = 'mse' AND horizon_step IS NULL",
                                       [run_id, predictor])[0][0] for predictor in ("model", "naive"))

    artifacts = artifacts_of(run_id)
    (table,) = artifacts["table"]
    assert table.key == "forecast-linear-metrics"
    valid_mse_row = next(r for r in json.loads(table.data) if (r["split"], r["metric"]) == ("valid", "mse"))
    assert valid_mse_row["model"] == pytest.approx(valid_mse, abs=1e-6)
    assert valid_mse_row["naive"] == pytest.approx(naive_valid_mse, abs=1e-6)
    assert valid_mse_row["book"] == REGISTRY["linear"].book_valid_mse
    (report,) = artifacts["markdown"]
    assert run_id in report.data and "ds-" in report.data and "model.keras" in report.data
    assert report.data.count("](data:image/png;base64,") == 2  # learning curve and forecasts, inline
    (progress,) = artifacts["progress"]
    assert progress.data == 100.0
    # seqcast serve shares the cores out among the training slots (1 here) through the runs' environment
    (model_path,) = rows(home, "SELECT model_path FROM runs WHERE flow_run_id = ?", [run_id])[0]
    assert Store(home).models.manifest(model_path)["tensorflow_threads"] == os.environ.get("TF_NUM_INTRAOP_THREADS",
                                                                             str(available_cores()))


def run_failing_once(served, stage: str, seed: int, tasks: int) -> tuple[Path, str, list[tuple[str, str]]]:
    """Run forecast/linear with a fault in ``stage`` on its first try; check it fired once and the flow retried.

    Returns SEQCAST_HOME, the run id and the run's ``tasks`` task run states (both tries).
    """
    _, home, marker = served
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(stage)
    flow_run = run_deployment_and_wait("forecast/linear", {**TINY_SERVED, "epochs": 2, "seed": seed})
    assert flow_run.state.name == "Completed", flow_run.state.message
    assert not marker.exists()  # the fault fired once
    assert flow_run.run_count == 2  # one flow retry
    return home, str(flow_run.id), task_run_states(str(flow_run.id), tasks)


def test_training_failure_is_retried_and_resumes_without_regenerating_data(served):
    home, run_id, states = run_failing_once(served, "train", seed=7, tasks=9)
    # the first try generated and persisted the data; the retry found it and did not generate it again
    assert [s for s in states if s[0] in ("generate-series", "persist-synthetic-dataset")] == [
        ("generate-series", "Completed"), ("persist-synthetic-dataset", "Completed")]
    assert sorted(s for s in states if s[0] == "train-model") == [("train-model", "Completed"),
                                                                  ("train-model", "Failed")]
    assert rows(home, "SELECT count(*) FROM runs WHERE flow_run_id = ?", [run_id]) == [(1,)]
    # resumed from the epoch-1 backup: both epochs recorded, epoch 1 from the first try's journal
    assert rows(home, "SELECT epoch FROM history WHERE run_id = ? ORDER BY epoch", [run_id]) == [(1,), (2,)]
    assert rows(home, "SELECT epochs FROM runs WHERE run_id = ?", [run_id]) == [(2,)]
    assert not (home / "models" / run_id / "backup").exists()  # backup removed once training finished


@pytest.mark.slow
def test_a_retry_after_training_keeps_the_trained_model(served):
    home, run_id, states = run_failing_once(served, "evaluate", seed=8, tasks=10)
    assert sorted(s for s in states if s[0] == "evaluate-model") == [("evaluate-model", "Completed"),
                                                                     ("evaluate-model", "Failed")]
    assert [s for s in states if s[0] == "train-model"].count(("train-model", "Completed")) == 2
    messages = flow_run_messages(run_id, until="linear was already trained in this flow run (2 epochs")
    assert any("linear was already trained in this flow run (2 epochs" in m for m in messages)
    assert sum("linear epoch 2/2" in m for m in messages) == 1  # trained once: the retry fitted nothing
    manifest = Store(home).models.manifest(f"models/{run_id}/model.keras")
    assert rows(home, "SELECT epochs, train_seconds FROM runs WHERE run_id = ?", [run_id]) == [
        (2, pytest.approx(manifest["train_seconds"]))]
    assert rows(home, "SELECT epoch FROM history WHERE run_id = ? ORDER BY epoch", [run_id]) == [(1,), (2,)]


def flow_run_messages(flow_run_id, until: str, timeout_s: float = 60) -> list[str]:
    """The run's log messages, once one contains ``until``: a served run's last logs reach the API in batches."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    deadline = time.monotonic() + timeout_s
    with get_client(sync_client=True) as client:
        while True:
            logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])),
                                    limit=200)
            messages = [log.message for log in logs]
            if any(until in m for m in messages) or time.monotonic() > deadline:
                return messages
            time.sleep(1)


@pytest.mark.parametrize("bad, message", [
    ({"variant": "transformer"}, "unknown variant 'transformer'"),
    ({"epochs": -1}, "greater than or equal to 1"),
])
def test_bad_parameters_fail_the_run_at_once_and_write_nothing(served, bad, message):
    _, home, _ = served
    flow_run = run_deployment_and_wait("forecast/linear", {**TINY_SERVED, **bad}, timeout_s=120)
    assert flow_run.state.name == "Failed" and flow_run.run_count == 1  # no retry for bad parameters
    assert message in flow_run.state.message
    assert task_run_states(flow_run.id, 0) == []
    assert not recorded(home, str(flow_run.id)) and not (home / "models" / str(flow_run.id)).exists()


@settings(max_examples=3)
@given(values=hostile(ForecastParams))
def test_a_deployment_run_with_hostile_parameters_fails_cleanly(served, values):
    """Whatever the API is sent, the run is refused at creation or ends Failed with the reason, and writes nothing."""
    from prefect.exceptions import PrefectHTTPStatusError

    _, home, _ = served
    try:
        ForecastParams(**{**TINY_SERVED, **values})
        assume(False)  # a valid set would train: only refusals are sent
    except ValidationError:
        pass
    try:
        flow_run = run_deployment_and_wait("forecast/naive", {**TINY_SERVED, **values}, timeout_s=120)
    except PrefectHTTPStatusError as exc:  # the server refuses values that do not fit the flow's signature
        assert exc.response.status_code in (409, 422) and exc.response.text
        return
    assert flow_run.state.name == "Failed" and flow_run.run_count == 1 and flow_run.state.message
    assert not recorded(home, str(flow_run.id)) and not (home / "models" / str(flow_run.id)).exists()


def recorded(home, run_id: str) -> bool:
    """Whether the results tables hold a run row of ``run_id``."""
    with results_db(home) as con:
        return con.execute("SELECT count(*) FROM runs WHERE run_id = ?", [run_id]).fetchone()[0] > 0


def test_sweep_triggers_deployments_and_publishes_leaderboard(served, monkeypatch):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    _, home, _ = served
    monkeypatch.setenv("SEQCAST_HOME", str(home))  # the sweep reads the results the served runs wrote
    table = sweep(variants=["naive", "linear"], parameters=TINY_SERVED, timeout_s=300)
    assert {r["variant"] for r in table} == {"naive", "linear"} and {r["state"] for r in table} == {"Completed"}
    assert [r["valid_mse"] for r in table] == sorted(r["valid_mse"] for r in table)
    flow_run_ids = [r["flow_run_id"] for r in table]
    assert rows(home, "SELECT count(*) FROM runs WHERE flow_run_id IN (SELECT unnest(?))", [flow_run_ids]) == [(2,)]
    with get_client(sync_client=True) as client:
        (latest,) = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[LEADERBOARD_KEY])),
                                          limit=1)
    assert {r["flow_run_id"] for r in json.loads(latest.data)} == set(flow_run_ids)


def test_work_pool_deploy_all_then_worker_runs_a_deployment(prefect_server, tmp_path):
    """Way 2: prefect.yaml + `prefect deploy --all` + a process worker, as the README shows."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterTags
    home = tmp_path / "seqcast-home"
    env = prefect_server.client_env(SEQCAST_HOME=str(home))

    def prefect(*args: str, timeout: float = 180) -> str:
        done = subprocess.run([sys.executable, "-m", "prefect", *args], cwd=REPO_ROOT, env=env,
                              capture_output=True, text=True, timeout=timeout, check=False)
        assert done.returncode == 0, f"prefect {' '.join(args)}: {done.stdout[-2000:]}{done.stderr[-2000:]}"
        return done.stdout

    prefect("work-pool", "create", "seqcast-process", "--type", "process", "--overwrite")
    prefect("--no-prompt", "deploy", "--all")
    with prefect_api(prefect_server.api_url):
        with get_client(sync_client=True) as client:
            deployed = client.read_deployments(deployment_filter=DeploymentFilter(
                tags=DeploymentFilterTags(all_=["seqcast"])))
            assert {d.name for d in deployed if d.work_pool_name == "seqcast-process"} >= set(REGISTRY)
            # naive_10: a deployment the module's `seqcast serve` (naive, linear) does not also poll for
            deployment = client.read_deployment_by_name("forecast/naive_10")
            assert [s.schedule.cron for s in deployment.schedules] == [deployment_specs(["naive_10"])[0].cron]
            flow_run = client.create_flow_run_from_deployment(deployment.id, parameters=TINY_SERVED)
        prefect("worker", "start", "--pool", "seqcast-process", "--run-once", timeout=240)
        with get_client(sync_client=True) as client:
            flow_run = client.read_flow_run(flow_run.id)
    assert flow_run.state.name == "Completed", flow_run.state.message
    assert rows(home, "SELECT variant FROM runs WHERE flow_run_id = ?", [str(flow_run.id)]) == [("naive_10",)]


@pytest.mark.integration
def test_serve_without_variants_serves_every_variant_and_the_monitor(tmp_path):
    """``seqcast serve`` alone: every variant's deployment and the monitor's, on a server of its own (the module's
    ``serve`` of naive and linear keeps those two deployments)."""
    from seqcast.deployments.monitor import monitor_spec
    from tests.prefect_server import start_server, stop_server

    server = start_server(tmp_path / "prefect-server")
    log = tmp_path / "serve.log"
    try:
        with open(log, "wb") as out:
            process = subprocess.Popen([sys.executable, "-m", "seqcast.app.cli", "serve", "--no-schedules"],
                                       cwd=REPO_ROOT, env=server.client_env(SEQCAST_HOME=str(tmp_path / "home")),
                                       stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            with prefect_api(server.api_url):
                wait_for_deployments([*(f"forecast/{v}" for v in REGISTRY), monitor_spec().full_name], process, log)
        finally:
            process.terminate()
            process.wait(timeout=60)
    finally:
        stop_server(server)
    assert f"seqcast: serving {len(REGISTRY)} deployment(s) with SEQCAST_HOME=" in log.read_text()


def test_a_sweep_fails_naming_the_runs_that_did_not_complete_and_times_out_on_slow_ones(served, monkeypatch):
    from seqcast.data.synthetic import SyntheticSpec, generate_splits
    from seqcast.storage.datasets import sync_dataset, write_dataset

    _, home, _ = served
    monkeypatch.setenv("SEQCAST_HOME", str(home))
    # a dataset of its own (seed 11), its training split damaged: linear fails on both tries, naive never reads it
    parameters = {**TINY_SERVED, "seed": 11}
    spec = SyntheticSpec(**{k: parameters[k] for k in ("n_series", "n_train", "n_valid", "n_test", "seed")})
    dataset = write_dataset(home / "datasets", spec.dataset_id, spec.model_dump(), generate_splits(spec))
    sync_dataset(dataset.path)
    train_file = dataset.path / "train.parquet"
    train_file.write_bytes(train_file.read_bytes()[:100])
    with pytest.raises(RuntimeError, match=r"^1 of 2 forecast run\(s\) did not complete: linear \(Failed\)$"):
        sweep(variants=["naive", "linear"], parameters=parameters, timeout_s=300)
    with pytest.raises(TimeoutError, match=r"^forecast runs still not finished after 1 s"):
        sweep(variants=["naive"], parameters=parameters, timeout_s=1)  # the runner has not even picked it up

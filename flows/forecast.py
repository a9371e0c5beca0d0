"""The forecast flow: generate -> persist as Parquet -> train -> evaluate -> record in DuckDB, for one variant."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime

from prefect import flow, get_run_logger
from prefect.runtime import flow_run
from prefect.utilities.annotations import quote

from seqcast.config.names import FLOW_NAME
from seqcast.config.params import ForecastParams, Loss
from seqcast.data.normalise import WindowNorm
from seqcast.flows.shards import map_shards, shard_task
from seqcast.flows.validation import give_up_retries, validated
from seqcast.models.ensemble import member_params
from seqcast.models.registry import get_variant
from seqcast.reporting.report import artifact_key
from seqcast.storage.datasets import DatasetRef, is_sharded
from seqcast.storage.home import current_store
from seqcast.tasks.data import find_dataset, fit_to_dataset, generate_series, persist_dataset
from seqcast.tasks.evaluate import ScoredRun, combine_shards, evaluate_model, evaluate_shard
from seqcast.tasks.publish import publish_artifacts
from seqcast.tasks.record import record_results
from seqcast.tasks.rows import result_rows
from seqcast.tasks.train import find_trained_run, save_ensemble, train_model
from seqcast.training.fit import Diverged


def run_name() -> str:
    """Name flow runs after what they do, e.g. ``linear · ds-1a2b3c4d5e6f``."""
    parameters = flow_run.parameters or {}
    try:
        return f"{parameters.get('variant', 'linear')} · {ForecastParams(**parameters).target_dataset_id}"
    except ValueError:
        return f"{parameters.get('variant', '?')} · invalid parameters"


# retries: a failed run (e.g. a transient I/O error) runs again under the same flow run id, so training resumes
# from its BackupAndRestore backup and the persisted dataset is reused; bad parameters are not retried.
@flow(name=FLOW_NAME, flow_run_name=run_name, log_prints=True, retries=1, retry_delay_seconds=10)
def forecast(
    variant: str = "linear",
    n_series: int = 10_000,
    n_steps: int = 50,
    horizon: int | None = None,
    seed: int = 42,
    n_train: int = 7_000,
    n_valid: int = 2_000,
    n_test: int = 1_000,
    epochs: int = 100,
    patience: int | None = None,
    batch_size: int = 32,
    learning_rate: float = 1e-3,
    units: int | None = None,
    dropout: float | None = None,
    recurrent_dropout: float | None = None,
    jit_compile: bool | None = None,
    steps_per_execution: int = 32,
    base_run_id: str | None = None,
    dataset_id: str | None = None,
    window_norm: WindowNorm | None = None,
    loss: Loss | None = None,
    input_steps: int | None = None,
    steps_per_epoch: int = 1000,
) -> dict:
    """Train and score one model variant on the chapter's series; record everything in DuckDB."""
    params = validated(ForecastParams, dict(locals()))  # before any work; no retry for bad parameters
    started_at, clock = datetime.now(UTC), time.perf_counter()
    run_id = str(flow_run.id or uuid.uuid4())

    try:  # a dataset or base run that does not fit is as final as a bad parameter: fail now, no retry
        params.require_data()
        params, dataset = fit_to_dataset(params) if params.dataset_id is not None else (params, None)
        base_run = base_model_run(params) if params.base_run_id is not None else None
    except ValueError:
        give_up_retries()
        raise
    if dataset is None:
        spec = params.dataset_spec()
        dataset = find_dataset(spec) or persist_dataset(spec, generate_series(spec))

    kind = get_variant(params.variant)
    trained, model_path = None, None
    try:
        if kind.trainable:
            # quote(): a dataset's manifest can hold a value per series, which Prefect need not walk for futures
            trained = train_model(params, quote(dataset), run_id)
            model_path = trained.model_path
        elif kind.target == "iterative":
            base_run = base_run or base_model_run(params)  # found before any work when base_run_id named it
            model_path = base_run["model_path"]
        elif kind.target == "ensemble":
            members = [trained_run(member_params(params, member)) if get_variant(member.variant).target != "stats"
                       else stats_member(member.variant) for member in kind.members]
            model_path = save_ensemble(params, quote(dataset), run_id, members)
        scored = evaluate_run(params, dataset, model_path, run_id, trained.history if trained else [])
    except Diverged as exc:  # the same data and parameters diverge again: record the failure, no retry
        give_up_retries()
        record_results(run_id, result_rows(run_id, params, dataset, trained, model_path, base_run, None, started_at,
                                           datetime.now(UTC), time.perf_counter() - clock, error=str(exc)))
        raise

    rows = result_rows(run_id, params, dataset, trained, model_path, base_run, scored, started_at,
                       datetime.now(UTC), time.perf_counter() - clock)
    record_results(run_id, quote(rows))  # plain values: Prefect need not walk every row for futures
    current_store().staged.discard(run_id)  # committed: the shards' staged rows are in the tables now
    publish_artifacts(rows["runs"][0], rows["metrics"])
    evaluation = scored.evaluation
    return {"run_id": run_id, "variant": params.variant, "dataset_id": dataset.dataset_id,
            "valid_mse": evaluation.figure("valid"), "test_mse": evaluation.figure("test"),
            "naive_valid_mse": evaluation.figure("valid", "naive"), "epochs": trained.epochs if trained else None,
            "model_path": model_path}


def evaluate_run(params: ForecastParams, dataset: DatasetRef, model_path: str | None, run_id: str,
                 history: list[dict]) -> ScoredRun:
    """Score the run: on a sharded dataset one task per shard (each stages its rows of the large tables, and the
    figures combine their partial sums), on any other one task. A retried flow run keeps the shards it staged: its
    training reuses the model they were scored with (``train_model``), so they hold what a new try would."""
    if not is_sharded(dataset):
        return evaluate_model(params, quote(dataset), model_path, run_id, history)
    parts = map_shards(shard_task(evaluate_shard, final=(Diverged, ValueError)),
                       list(range(dataset.manifest["n_shards"])), f"{params.variant} evaluation",
                       key=artifact_key(params.variant, "shards"), params=params, dataset_id=dataset.dataset_id,
                       model_path=model_path, run_id=run_id)
    # quote(): plain values, which Prefect need not walk for futures (a manifest can hold a value per series)
    return combine_shards(params, quote(dataset), run_id, quote(history), quote(parts))


def base_model_run(params: ForecastParams) -> dict:
    """The one-step run an iterative variant applies repeatedly: reuse a matching one, else train it now."""
    base = get_variant(params.variant).base_variant
    base_params = params.model_copy(update={"variant": base, "horizon": 1, "base_run_id": None})
    dataset_id = base_params.target_dataset_id
    if params.base_run_id is not None:
        found = find_trained_run(base, dataset_id, base_params, run_id=params.base_run_id)
        if found is None:
            raise ValueError(f"base_run_id {params.base_run_id!r} is no completed {base} run on {dataset_id}")
        return found
    return trained_run(base_params)


def trained_run(params: ForecastParams) -> dict:
    """The newest completed run trained with ``params``: reuse one, else train it now in a forecast subflow."""
    dataset_id = params.target_dataset_id
    found = find_trained_run(params.variant, dataset_id, params)
    if found is None:
        get_run_logger().info("no trained %s on %s with these parameters yet: training it first", params.variant,
                              dataset_id)
        forecast(**params.model_dump())
        found = find_trained_run(params.variant, dataset_id, params)
    return found


def stats_member(variant: str) -> dict:
    """A statistical member of an ensemble, as ``save_ensemble`` takes its members' runs: it has no run and no
    model, because it fits each series' history whenever it forecasts."""
    return {"run_id": None, "variant": variant, "model_path": None, "params": json.dumps({"window_norm": "none"})}

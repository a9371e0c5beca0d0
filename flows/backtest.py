"""The backtest flow: one variant forecast from several cutoffs of a last-horizon dataset, every forecast stored."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime

from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from seqcast.config.params import ForecastParams
from seqcast.evaluation.backtest import BacktestParams, sums_scores
from seqcast.flows.forecast import trained_run
from seqcast.flows.shards import map_shards, shard_task
from seqcast.flows.validation import give_up_retries, validated
from seqcast.models.registry import get_variant
from seqcast.reporting.report import artifact_key
from seqcast.tasks.backtest import (
    calibrate_backtest,
    derive_dataset,
    discard_staged,
    forecast_shard,
    interval_shard,
    plan_backtest,
    publish_backtest,
    staged_outputs,
)
from seqcast.tasks.record import record_results
from seqcast.tasks.rows import backtest_rows
from seqcast.training.fit import Diverged


def run_name() -> str:
    """Name flow runs after what they do, e.g. ``backtest · theta · ds-1a2b3c4d5e6f · 3 cutoffs``."""
    parameters = flow_run.parameters or {}
    return (f"backtest · {parameters.get('variant', '?')} · {parameters.get('dataset_id', '?')} · "
            f"{parameters.get('windows', 3)} cutoffs{' refit' if parameters.get('refit') else ''}")


# retries: a failed backtest (e.g. a transient I/O error) runs again; the models it trained are found and reused,
# as are the datasets it derived and the shards it staged. Bad parameters, a dataset that does not fit and
# divergence are not retried.
@flow(name="backtest", flow_run_name=run_name, log_prints=True, retries=1, retry_delay_seconds=10)
def backtest(variant: str, dataset_id: str, windows: int = 3, step: int | None = None, refit: bool = False,
             parameters: dict | None = None, levels: list[float] | None = None) -> dict:
    """Forecast every series of the dataset from ``windows`` cutoffs ``step`` steps apart (the last one the test
    cutoff); score every forecast by sMAPE, MASE and against Naive2; put conformal intervals at ``levels`` (percent,
    default 80 and 95) around it, calibrated on the cutoffs before its own; record them in the tables
    ``backtest_forecasts`` and ``backtest_intervals``.

    One task per shard of the dataset forecasts all its cutoffs and stages its rows; the intervals' pooled
    quantiles come from every shard's staged scaled errors, then one task per shard puts the intervals around its
    forecasts and sums its scores. The model is trained once on the dataset (or a completed run with the same
    parameters is reused) unless ``refit``, which trains one per cutoff on the values before it; each training is
    its own forecast flow run.
    """
    params = validated(BacktestParams, {"variant": variant, "dataset_id": dataset_id, "windows": windows,
                                        "step": step, "refit": refit, "parameters": parameters or {},
                                        "levels": levels})
    started_at, clock = datetime.now(UTC), time.perf_counter()
    run_id = str(flow_run.id or uuid.uuid4())
    try:  # a dataset the backtest does not fit is as final as a bad parameter: fail now, no retry
        plan = plan_backtest(params)
    except ValueError:
        give_up_retries()
        raise

    forecast_params, horizon = plan.forecast_params, plan.forecast_params.effective_horizon
    model_runs, model_paths, model_datasets, datasets = [], [], [], [plan.dataset]
    try:
        for offset in plan.offsets:
            model_run, ref = None, None
            if needs_model(forecast_params):
                ref = derive_dataset(plan, offset) if params.refit and offset else plan.dataset
                if ref is not plan.dataset:
                    datasets.append(ref)
                model_run = trained_run(forecast_params.model_copy(update={"dataset_id": ref.dataset_id}))
            model_runs.append(model_run["run_id"] if model_run else None)
            model_paths.append(model_run["model_path"] if model_run else None)
            model_datasets.append(ref.dataset_id if ref else None)
        map_shards(shard_task(forecast_shard, final=(Diverged,)), plan.shards, f"{params.variant} backtest forecasts",
                   key=artifact_key(params.variant, "backtest-shards"), run_id=run_id, params=forecast_params,
                   offsets=plan.offsets, model_paths=model_paths, model_datasets=model_datasets)
    except Diverged as exc:  # the same data and parameters diverge again: record the failure, no retry
        give_up_retries()
        record_results(run_id, backtest_rows(run_id, params, plan, model_runs, datasets, started_at,
                                             time.perf_counter() - clock, error=str(exc)))
        discard_staged(run_id)
        raise

    pooled = calibrate_backtest(run_id, params.levels, horizon)
    parts = map_shards(shard_task(interval_shard, final=(Diverged,)), plan.shards,
                       f"{params.variant} backtest intervals", key=artifact_key(params.variant, "backtest-intervals"),
                       run_id=run_id, levels=params.levels, horizon=horizon, n_cutoffs=len(plan.offsets),
                       pooled=pooled)
    sums = sum(parts[1:], parts[0])
    scores, by_level = sums_scores(sums)
    logger = get_run_logger()
    for k, offset in enumerate(plan.offsets):
        logger.info("cutoff %d (%d steps before the test cutoff): %d series, %d left out (too short there)", k,
                    offset, sums.n_series[k], plan.n_series - sums.n_series[k])
    record_results(run_id, backtest_rows(run_id, params, plan, model_runs, datasets, started_at,
                                         time.perf_counter() - clock, sums, scores, by_level,
                                         staged_outputs(run_id)))
    discard_staged(run_id)
    publish_backtest(params.variant, params.dataset_id, run_id, scores)
    overall = scores[-1]
    logger.info("%s backtest over %d cutoffs: sMAPE %s, MASE %s, OWA %s", params.variant, params.windows,
                *(f"{overall[k]:.3f}" if overall[k] is not None else "-" for k in ("smape", "mase", "owa")))
    return {"run_id": run_id, "variant": params.variant, "dataset_id": params.dataset_id, "windows": params.windows,
            "refit": params.refit, **{k: overall[k] for k in ("smape", "mase", "owa", "n_series")}}


def needs_model(params: ForecastParams) -> bool:
    """Whether the variant forecasts with a model some forecast run trained (not naive, not statistical)."""
    return get_variant(params.variant).target not in ("naive", "stats")

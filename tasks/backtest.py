"""Backtest stages: check the plan, derive a dataset per refit cutoff, forecast and score every cutoff, put
conformal intervals around every forecast."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from prefect import get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from seqcast.config.params import ForecastParams
from seqcast.data.ingest import build_dataset
from seqcast.data.scaling import Scaler
from seqcast.evaluation.backtest import (
    BacktestParams,
    Cutoff,
    add_intervals,
    backtest_scores,
    cut,
    cutoff_scaling,
    forecast_rows,
    refit_input,
)
from seqcast.evaluation.holdout import forecast_groups
from seqcast.evaluation.run import forecast_inputs
from seqcast.models.registry import get_variant
from seqcast.reporting.report import artifact_key
from seqcast.storage.datasets import DatasetRef
from seqcast.storage.home import current_store
from seqcast.tasks.evaluate import load_model
from seqcast.tasks.ingest import write_prepared
from seqcast.tasks.progress import Progress


@dataclass
class BacktestPlan:
    """A checked backtest: its dataset, the model's parameters fitted to it, and every cutoff's series."""

    dataset: DatasetRef
    forecast_params: ForecastParams
    cutoffs: list[Cutoff]
    values: dict[str, np.ndarray]
    periods: dict[str, int]


def check_plan(params: BacktestParams) -> BacktestPlan:
    """Resolve the dataset, fit the variant to it and cut every cutoff; ValueError naming the first problem.

    Runs before any work, in the command as in the flow, so that a backtest that cannot run costs nothing.
    """
    dataset = current_store().datasets.require(params.dataset_id)
    spec = dataset.manifest["spec"]
    if spec.get("split") != "last-horizon":
        raise ValueError(f"a backtest forecasts from cutoffs before each series' test part, so it needs a dataset "
                         f"ingested with split='last-horizon'; dataset {params.dataset_id} was split by "
                         f"{spec.get('split', 'fractions')}")
    forecast_params = ForecastParams(variant=params.variant, dataset_id=params.dataset_id,
                                     **params.parameters).for_dataset(dataset.manifest)
    stored = current_store().datasets.read_series_values(dataset)
    if stored is None:
        raise ValueError(f"dataset {params.dataset_id} was ingested before seqcast stored each series' values, "
                         f"which a backtest cuts at its cutoffs; remove its folder and ingest it again")
    values, periods = stored
    horizon, n_steps = spec["horizon"], spec["n_steps"]
    cutoffs = [cut(values, periods, horizon, n_steps, k, offset) for k, offset in enumerate(params.offsets(horizon))]
    empty = [c for c in cutoffs if not c.series.series_ids]
    if empty:
        raise ValueError(f"cutoff {empty[0].index} ({empty[0].offset} steps before the test cutoff) leaves no "
                         f"series of {params.dataset_id} with enough history to forecast from; use fewer windows "
                         f"or a smaller step")
    return BacktestPlan(dataset, forecast_params, cutoffs, values, periods)


@task(name="plan-backtest", cache_policy=NO_CACHE)
def plan_backtest(params: BacktestParams) -> BacktestPlan:
    """Check the backtest and cut its cutoffs (see :func:`check_plan`)."""
    plan = check_plan(params)
    logger = get_run_logger()
    for c in plan.cutoffs:
        logger.info("cutoff %d (%d steps before the test cutoff): %d series%s", c.index, c.offset,
                    len(c.series.series_ids), f", {c.left_out} left out (too short there)" if c.left_out else "")
    return plan


@task(name="derive-cutoff-dataset", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[1, 5])
def derive_dataset(plan: BacktestPlan, offset: int) -> DatasetRef:
    """The dataset a refit at a cutoff trains on: every series without its last ``offset`` steps, cut as the
    original was. Content-addressed, so a rerun finds the one it wrote before."""
    datasets, logger = current_store().datasets, get_run_logger()
    series, ingest_params = refit_input(plan.values, plan.periods, plan.dataset.manifest["spec"], offset)
    prepared = build_dataset(series, ingest_params)
    found = datasets.find(prepared.dataset_id)
    if found is not None:
        logger.info("reusing %s for the cutoff %d steps back", found.dataset_id, offset)
        return found
    ref = write_prepared(prepared)
    logger.info("derived %s (%d series) for the cutoff %d steps back", ref.dataset_id, len(series), offset)
    return ref


@task(name="forecast-cutoff", cache_policy=NO_CACHE)
def forecast_cutoff(params: ForecastParams, cutoff: Cutoff, model_path: str | None, scaling: dict | None
                    ) -> list[dict]:
    """Forecast every series of one cutoff, in original units, and score each forecast step."""
    series = cutoff.series
    scaler = Scaler.from_dict(cutoff_scaling(scaling, cutoff))
    forecasts = forecast_inputs(get_variant(params.variant), load_model(model_path), scaler,
                                cutoff.inputs, series.series_ids, params.effective_horizon, params.window_norm, series)
    return forecast_rows(cutoff, finite(params.variant, cutoff, forecasts))


@task(name="forecast-stats-cutoffs", cache_policy=NO_CACHE)
def forecast_stats_cutoffs(params: ForecastParams, cutoffs: list[Cutoff]) -> list[dict]:
    """Forecast every series of every cutoff with a statistical variant, in original units, and score each forecast
    step: the fits of all cutoffs in one pass over one process pool (as statsforecast's ``cross_validation`` fits
    each window), their progress reported as they finish."""
    horizon = params.effective_horizon
    progress = Progress(f"{params.variant} fits at {len(cutoffs)} cutoff(s)",
                        sum(len(c.series.series_ids) for c in cutoffs), key=artifact_key(params.variant,
                                                                                        "backtest-fits"))
    found = forecast_groups(get_variant(params.variant).method, [c.series for c in cutoffs], horizon, progress)
    rows = []
    for cutoff, forecasts in zip(cutoffs, found):
        rows += forecast_rows(cutoff, finite(params.variant, cutoff, forecasts))
    return rows


def finite(variant: str, cutoff: Cutoff, forecasts: np.ndarray) -> np.ndarray:
    """The forecasts of a cutoff (n_series, h) as float64; Diverged when any is NaN or infinite."""
    bad = int((~np.isfinite(forecasts)).any(axis=1).sum())
    if bad:
        from seqcast.training.fit import Diverged

        raise Diverged(f"{variant}: the forecasts of {bad} of {len(forecasts)} series at cutoff {cutoff.index} are "
                       f"NaN or infinite, so the backtest has no meaningful score")
    return np.asarray(forecasts, dtype=np.float64)


@task(name="interval-forecasts", cache_policy=NO_CACHE)
def interval_forecasts(rows: list[dict], levels: tuple[float, ...], horizon: int) -> tuple[list[dict], list[dict]]:
    """Put each level's conformal interval around every forecast, calibrated on the cutoffs before its own; return
    the forecast rows (with the default levels' columns) and the ``backtest_intervals`` rows."""
    intervals = add_intervals(rows, levels, horizon)
    return rows, intervals


@task(name="score-backtest", cache_policy=NO_CACHE)
def score_backtest(rows: list[dict], intervals: list[dict]) -> tuple[list[dict], list[dict]]:
    """Score the backtest's forecasts and intervals: the ``backtest_cutoff_scores`` rows (sMAPE, MASE, OWA, and
    coverage and MSIS at the default levels, per cutoff and over all) and the ``backtest_level_scores`` rows
    (coverage and MSIS at every level)."""
    return backtest_scores(rows, intervals)


@task(name="publish-backtest", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[2, 10])
def publish_backtest(variant: str, dataset_id: str, run_id: str, scores: list[dict]) -> None:
    """Publish the backtest's scores per cutoff (and over all of them) as a table artifact."""
    table = [{"cutoff": "all" if row["cutoff"] is None else row["cutoff"], **{k: v for k, v in row.items()
                                                                             if k != "cutoff"}} for row in scores]
    create_table_artifact(table, key=artifact_key(variant, "backtest"),
                          description=f"{variant} backtest {run_id} on {dataset_id}: sMAPE, MASE and OWA per cutoff, "
                                      f"coverage (percent) and MSIS of the intervals at each level")

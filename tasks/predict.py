"""Predict stages: choose the trained run, calibrate its intervals, gather the latest windows, forecast, record
durably."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from seqcast.forecasting.champion import Choice
from seqcast.forecasting.intervals import DEFAULT_LEVELS, Calibration, calibrate, history_scales
from seqcast.forecasting.predict import (
    ChosenModel,
    LatestWindows,
    PredictParams,
    backtest_model,
    chosen_model,
    file_latest,
    forecast_latest,
    forecast_rows,
    series_latest,
)
from seqcast.models.registry import NEEDS_DATASET
from seqcast.storage.forecasts import write_forecasts
from seqcast.storage.home import current_store
from seqcast.tasks.evaluate import load_model
from seqcast.tasks.ingest import read_validated


@task(name="choose-model", cache_policy=NO_CACHE)
def choose_run(params: PredictParams, champion: tuple[Choice, str] | None = None) -> ChosenModel:
    """Return the run named by id, the dataset's ``champion`` (its choice and choice id), or the best valid MSE of
    the dataset's runs of a family or variant."""
    store = current_store()
    results = store.results
    if champion is not None:
        return champion_model(*champion)
    if params.run_id is not None:
        run = results.completed_run(params.run_id)
        if run is None:
            raise ValueError(f"no completed run {params.run_id!r} in {results.location}")
    else:
        run = results.best_run(params.dataset_id, params.family, params.variant, NEEDS_DATASET)
        if run is None:
            raise ValueError(f"no scored run on dataset {params.dataset_id!r}"
                             f"{f' of family {params.family!r}' if params.family else ''}"
                             f"{f' of variant {params.variant!r}' if params.variant else ''} in {results.location}")
    model = chosen_model(run, store.models.manifest(run["model_path"]) if run["model_path"] else None)
    get_run_logger().info("forecasting with %s run %s (valid MSE %s, n_steps %d, horizon %d)", model.variant,
                          model.run_id, model.valid_mse, model.n_steps, model.horizon)
    return model


def champion_model(choice: Choice, choice_id: str) -> ChosenModel:
    """What forecasting with a dataset's champion needs: its trained run, or for a variant without a model, the
    backtest it won with."""
    store, c = current_store(), choice.champion
    if c.run_id == c.backtest_run_id:
        backtest = store.results.completed_backtest(c.backtest_run_id)
        if backtest is None:
            raise ValueError(f"no completed backtest {c.backtest_run_id!r} in {store.results.location}")
        model = backtest_model(backtest, choice_id)
    else:
        run = store.results.completed_run(c.run_id)
        if run is None:
            raise ValueError(f"the champion of {choice.dataset_id}, run {c.run_id!r}, is not a completed run in "
                             f"{store.results.location}")
        model = replace(chosen_model(run, store.models.manifest(run["model_path"]) if run["model_path"] else None),
                        backtest_run_id=c.backtest_run_id, choice_id=choice_id)
    get_run_logger().info("forecasting with the champion of %s, %s run %s (backtest MASE %.4f over %d cutoffs; "
                          "choice %s)", choice.dataset_id, model.variant, model.run_id, c.mase, c.windows, choice_id)
    return model


@task(name="latest-windows", cache_policy=NO_CACHE)
def latest_windows(params: PredictParams, model: ChosenModel) -> LatestWindows:
    """The latest n_steps values of every series, from the new file or from the dataset."""
    if params.source is not None:
        reader = params.reader(model.n_steps, model.horizon)
        return file_latest(read_validated(reader, min_length=model.n_steps), reader, model)
    datasets = current_store().datasets
    dataset_id = params.dataset_id or model.dataset_id
    dataset = datasets.find(dataset_id)
    if dataset is None:
        raise ValueError(f"no dataset {dataset_id!r} in {datasets.where}")
    ingested = dataset.manifest["spec"].get("kind") == "ingested"
    series = datasets.read_table(dataset, "series").to_pylist() if ingested else []
    stored = datasets.read_series_values(dataset) if ingested else None
    return series_latest(dataset_id, dataset.manifest["spec"], series, model,
                         history_scales(*stored) if stored is not None else None, stored)


@task(name="calibrate-intervals", cache_policy=NO_CACHE)
def calibrate_intervals(model: ChosenModel) -> tuple[str | None, Calibration | None]:
    """The champion's backtest (else the newest completed backtest whose cutoff 0 the run forecast), and the
    quantiles of its scaled errors over all its cutoffs at the default levels; (None, None) when the run has no
    backtest."""
    results = current_store().results
    # a champion's intervals come from the backtest that made it champion
    found = results.completed_backtest(model.backtest_run_id) if model.backtest_run_id else \
        results.run_backtest(model.run_id, model.dataset_id, model.variant, model.horizon)
    if found is None:
        get_run_logger().warning(
            "run %s has no completed backtest on %s, so its forecasts have no intervals (lo_80 .. hi_95 NULL); "
            "`seqcast backtest --dataset-id %s --variant %s` with the run's training options gives them",
            model.run_id, model.dataset_id, model.dataset_id, model.variant)
        return None, None
    residuals = results.backtest_residuals(found["run_id"])
    calibration = calibrate(np.array(residuals["series_id"], dtype=str), np.array(residuals["step"]),
                            np.array(residuals["scaled_error"], dtype=np.float64), model.horizon, DEFAULT_LEVELS)
    get_run_logger().info("intervals calibrated on backtest %s (%d cutoffs, %d scaled errors)", found["run_id"],
                          found["windows"], len(residuals["step"]))
    return found["run_id"], calibration


@task(name="forecast-series", cache_policy=NO_CACHE)
def forecast_series(run_id: str, model: ChosenModel, dataset_id: str | None, latest: LatestWindows,
                    calibration: Calibration | None = None, interval_run_id: str | None = None) -> list[dict]:
    """Forecast the next horizon of every series; return forecasts rows in original units, with the conformal
    intervals of ``calibration`` where there is one."""
    values = forecast_latest(model, load_model(model.model_path), latest)
    return forecast_rows(run_id, model, dataset_id, latest, values, calibration, interval_run_id)


@task(name="record-forecasts", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[1, 5])
def record_forecasts(run_id: str, rows: list[dict], output: str | None) -> None:
    """Commit the forecasts to the ``forecasts`` table, and write them to the Parquet file ``output`` if given."""
    results = current_store().results
    write_forecasts(results, run_id, rows, Path(output) if output else None)
    get_run_logger().info("%d forecasts of %d series recorded in %s%s", len(rows),
                          len({row["series_id"] for row in rows}), results.location,
                          f" and written to {output}" if output else "")

"""Predict stages: choose the trained run, gather the latest windows, forecast, record durably."""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from seqcast.predict import (
    ChosenModel,
    LatestWindows,
    PredictParams,
    chosen_model,
    file_latest,
    forecast_latest,
    forecast_rows,
    series_latest,
)
from storage.forecasts import write_forecasts
from storage.results import LoadReport
from tasks.evaluate import load_model
from tasks.runtime import current_store


@task(name="choose-model", cache_policy=NO_CACHE)
def choose_run(params: PredictParams) -> ChosenModel:
    """Return the run named by id, or the best valid MSE of the dataset (and family/variant)."""
    store = current_store()
    results = store.results
    if params.run_id is not None:
        run = results.completed_run(params.run_id)
        if run is None:
            raise ValueError(f"no completed run {params.run_id!r} in {results.path}")
    else:
        run = results.best_run(params.dataset_id, params.family, params.variant)
        if run is None:
            raise ValueError(f"no scored run on dataset {params.dataset_id!r}"
                             f"{f' of family {params.family!r}' if params.family else ''}"
                             f"{f' of variant {params.variant!r}' if params.variant else ''} in {results.path}")
    model = chosen_model(run, store.models.manifest(run["model_path"]) if run["model_path"] else None)
    get_run_logger().info("forecasting with %s run %s (valid MSE %s, n_steps %d, horizon %d)", model.variant,
                          model.run_id, model.valid_mse, model.n_steps, model.horizon)
    return model


@task(name="latest-windows", cache_policy=NO_CACHE)
def latest_windows(params: PredictParams, model: ChosenModel) -> LatestWindows:
    """The latest n_steps values of every series, from the new file or from the dataset."""
    if params.source is not None:
        return file_latest(params, model)
    datasets = current_store().datasets
    dataset_id = params.dataset_id or model.dataset_id
    dataset = datasets.find(dataset_id)
    if dataset is None:
        raise ValueError(f"no dataset {dataset_id!r} in {datasets.root}")
    series = datasets.read_table(dataset, "series").to_pylist() if dataset.manifest["spec"].get("kind") == \
        "ingested" else []
    return series_latest(dataset_id, dataset.manifest["spec"], series, model)


@task(name="forecast-series", cache_policy=NO_CACHE)
def forecast_series(run_id: str, model: ChosenModel, dataset_id: str | None, latest: LatestWindows) -> list[dict]:
    """Forecast the next horizon of every series; return forecasts rows in original units."""
    values = forecast_latest(model, load_model(model.model_path), latest)
    return forecast_rows(run_id, model, dataset_id, latest, values)


@task(name="record-forecasts", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[1, 5])
def record_forecasts(run_id: str, rows: list[dict], output: str | None) -> tuple[Path, LoadReport]:
    """Commit the forecasts as Parquet (and to ``output``), then load them into DuckDB ``forecasts``."""
    parquet, report = write_forecasts(current_store().results, run_id, rows, Path(output) if output else None)
    if report.pending:
        get_run_logger().warning("forecasts of %s are safe in %s but not yet in DuckDB (database locked); "
                                 "run `seqcast results sync` once it is free", run_id, parquet)
    return parquet, report

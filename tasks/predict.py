"""Predict stages: choose the trained run, gather the latest windows, forecast, record durably."""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from seqcast.predict import (
    ChosenModel,
    LatestWindows,
    PredictParams,
    choose_model,
    dataset_latest,
    file_latest,
    forecast_latest,
    forecast_rows,
)
from seqcast.settings import datasets_dir, records_dir, results_db
from storage.forecasts import write_forecasts
from storage.results import LoadReport


@task(name="choose-model", cache_policy=NO_CACHE)
def choose_run(params: PredictParams) -> ChosenModel:
    """Return the run named by id, or the best valid MSE of the dataset (and family/variant)."""
    model = choose_model(results_db(), params)
    get_run_logger().info("forecasting with %s run %s (valid MSE %s, n_steps %d, horizon %d)", model.variant,
                          model.run_id, model.valid_mse, model.n_steps, model.horizon)
    return model


@task(name="latest-windows", cache_policy=NO_CACHE)
def latest_windows(params: PredictParams, model: ChosenModel) -> LatestWindows:
    """The latest n_steps values of every series, from the new file or from the dataset."""
    if params.source is not None:
        return file_latest(params, model)
    return dataset_latest(datasets_dir(), params.dataset_id or model.dataset_id, model)


@task(name="forecast-series", cache_policy=NO_CACHE)
def forecast_series(run_id: str, model: ChosenModel, dataset_id: str | None, latest: LatestWindows) -> list[dict]:
    """Forecast the next horizon of every series; return forecasts rows in original units."""
    return forecast_rows(run_id, model, dataset_id, latest, forecast_latest(model, latest))


@task(name="record-forecasts", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[1, 5])
def record_forecasts(run_id: str, rows: list[dict], output: str | None) -> tuple[Path, LoadReport]:
    """Commit the forecasts as Parquet (and to ``output``), then load them into DuckDB ``forecasts``."""
    logger = get_run_logger()
    parquet, report = write_forecasts(records_dir(), results_db(), run_id, rows, Path(output) if output else None)
    if report.pending:
        logger.warning("forecasts of %s are safe in %s but not yet in DuckDB (database locked); "
                       "run `seqcast results sync` once it is free", run_id, parquet)
    return parquet, report

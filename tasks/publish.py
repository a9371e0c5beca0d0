"""Stage 6: publish the run in the Prefect UI: metrics beside the baselines, a report, and the plots; and a predict
run's forecasts with their intervals."""

from __future__ import annotations

import json

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.tasks import exponential_backoff

from seqcast.forecasting.predict import ChosenModel, LatestWindows
from seqcast.reporting.plots import plot_forecasts
from seqcast.reporting.report import (
    artifact_key,
    forecast_bands,
    forecast_table,
    metrics_table,
    predict_key,
    predict_markdown,
    report_markdown,
)
from seqcast.storage.home import current_store


@task(name="publish-artifacts", cache_policy=NO_CACHE, retries=2,
      retry_delay_seconds=exponential_backoff(backoff_factor=2))
def publish_artifacts(run: dict, metrics: list[dict]) -> None:
    """Publish the run's metrics table and markdown report (with its plots) as Prefect artifacts."""
    models = current_store().models
    table = metrics_table(run["variant"], metrics, book_data=json.loads(run["params"]).get("dataset_id") is None)
    create_table_artifact(table, key=artifact_key(run["variant"], "metrics"),
                          description=f"{run['variant']} on {run['dataset_id']}: model vs naive vs the book")
    report = report_markdown(run, table, models.read_file(run["learning_curve_path"]),
                             models.read_file(run["forecast_plot_path"]))
    create_markdown_artifact(report, key=artifact_key(run["variant"], "report"),
                             description=f"{run['variant']} run {run['run_id']}: report and plots")
    get_run_logger().info("published metrics and report artifacts of %s", run["run_id"])


@task(name="publish-forecasts", cache_policy=NO_CACHE, retries=2,
      retry_delay_seconds=exponential_backoff(backoff_factor=2))
def publish_forecasts(summary: dict, model: ChosenModel, latest: LatestWindows, rows: list[dict]) -> None:
    """Publish a predict run's first forecasts with their 80% and 95% bounds as a table artifact, and a report with
    the plot of the first series and their bands, and the coverage of the intervals in their backtest.

    ``summary``: the predict flow's result (run_id, model_run_id, variant, dataset_id, intervals_from, ...).
    """
    scores = None
    if summary["intervals_from"] is not None:
        columns, found = current_store().results.backtest_scores([summary["intervals_from"]])
        scores = dict(zip(columns, found[0])) if found else None
    shown = latest.series_ids[:3]
    values, bands = forecast_bands(rows, shown, model.horizon)
    plot = plot_forecasts(latest.inputs[:3], None, values, f"{model.variant}: the next {model.horizon} steps",
                          bands, names=shown, share_y=False)
    table = forecast_table(rows)
    variant = summary["variant"]
    create_table_artifact(table, key=predict_key(variant, "forecasts"),
                          description=f"{variant} predict run {summary['run_id']}: the first series' forecasts "
                                      f"with their 80% and 95% intervals")
    create_markdown_artifact(predict_markdown(summary, scores, table, plot), key=predict_key(variant, "report"),
                             description=f"{variant} predict run {summary['run_id']}: forecasts with their bands")
    get_run_logger().info("published the forecasts and report artifacts of predict run %s", summary["run_id"])

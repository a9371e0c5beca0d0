"""Stage 6: publish the run in the Prefect UI: metrics beside the baselines, a report, and the plots."""

from __future__ import annotations

import json

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.tasks import exponential_backoff

from seqcast.report import artifact_key, metrics_table, report_markdown
from tasks.runtime import current_store


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

"""Stage 6: publish the run in the Prefect UI: metrics beside the baselines, a report, and the plots."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.tasks import exponential_backoff

from seqcast.models import get_variant

METRIC_ORDER = ("mse", "rmse", "mae")


def artifact_key(variant: str, what: str) -> str:
    """A stable artifact key per variant (keys allow lowercase letters, digits and dashes only)."""
    return f"forecast-{variant.replace('_', '-').replace('.', '-').lower()}-{what}"


def metrics_table(variant: str, metrics: list[dict], book_data: bool = True) -> list[dict]:
    """One row per split and metric: the model, the naive baseline, their ratio, and the book's valid MSE.

    ``book_data``: the run used the chapter's generated series; on a user's own dataset the book has no figure.
    """
    overall = {(m["predictor"], m["split"], m["metric"]): m["value"] for m in metrics if m["horizon_step"] is None}
    book = get_variant(variant).book_valid_mse if book_data else None
    table = []
    for split in ("valid", "test"):
        for metric in METRIC_ORDER:
            model, naive = overall.get(("model", split, metric)), overall.get(("naive", split, metric))
            if model is None:
                continue
            table.append({"split": split, "metric": metric, "model": round(model, 6),
                          "naive": round(naive, 6) if naive is not None else None,
                          "model / naive": round(model / naive, 3) if naive else None,
                          "book": book if (split, metric) == ("valid", "mse") else None})
    return table


def inline_png(path: str | Path | None, alt: str) -> str:
    """Markdown image with the PNG embedded as a data URI: the UI shows it without access to SEQCAST_HOME."""
    if not path or not Path(path).is_file():
        return f"*({alt}: no plot)*"
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f"![{alt}](data:image/png;base64,{data})"


def report_markdown(run: dict, table: list[dict]) -> str:
    """The run's report: parameters, dataset, model, epochs, timings, metrics, and both plots inline."""
    def fmt(value) -> str:
        return "–" if value is None else f"{value:.1f} s" if isinstance(value, float) else str(value)

    params = json.loads(run["params"])
    lines = [f"# {run['variant']} on {run['dataset_id']}", "",
             "| | |", "|---|---|",
             f"| run id (= flow run id) | `{run['run_id']}` |",
             f"| dataset id | `{run['dataset_id']}` |",
             f"| model | `{run['model_path'] or '(none: baseline)'}` |",
             f"| base run | `{run['base_run_id'] or '–'}` |",
             f"| epochs run | {fmt(run['epochs'])} of max {params['epochs']} |",
             f"| parameters (trainable) | {fmt(run['n_params'])} |",
             f"| training time | {fmt(run['train_seconds'])} |",
             f"| run time | {fmt(run['duration_s'])} |",
             f"| started / finished (UTC) | {run['started_at']:%Y-%m-%d %H:%M:%S} / {run['finished_at']:%H:%M:%S} |",
             f"| code version | `{run['code_version']}` |", "",
             "## Metrics", "", "| split | metric | model | naive | model / naive | book |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['split']} | {r['metric']} | {r['model']} | {r['naive']} | {r['model / naive']} | "
              f"{r['book'] if r['book'] is not None else ''} |" for r in table]
    lines += ["", "## Parameters", "", "```json", json.dumps(params, indent=1), "```", "",
              "## Learning curve", "", inline_png(run["learning_curve_path"], "learning curve"), "",
              "## Forecasts", "", inline_png(run["forecast_plot_path"], "forecasts"), ""]
    return "\n".join(lines)


@task(name="publish-artifacts", cache_policy=NO_CACHE, retries=2,
      retry_delay_seconds=exponential_backoff(backoff_factor=2))
def publish_artifacts(run: dict, metrics: list[dict]) -> None:
    """Publish the run's metrics table and markdown report (with its plots) as Prefect artifacts."""
    table = metrics_table(run["variant"], metrics, book_data=json.loads(run["params"]).get("dataset_id") is None)
    create_table_artifact(table, key=artifact_key(run["variant"], "metrics"),
                          description=f"{run['variant']} on {run['dataset_id']}: model vs naive vs the book")
    create_markdown_artifact(report_markdown(run, table), key=artifact_key(run["variant"], "report"),
                             description=f"{run['variant']} run {run['run_id']}: report and plots")
    get_run_logger().info("published metrics and report artifacts of %s", run["run_id"])

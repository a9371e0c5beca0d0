"""What a run shows in the Prefect UI: its metrics beside the baselines and the book, and a Markdown report."""

from __future__ import annotations

import base64
import json

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


def inline_png(png: bytes | None, alt: str) -> str:
    """Markdown image with the PNG embedded as a data URI: the UI shows it without access to SEQCAST_HOME."""
    if not png:
        return f"*({alt}: no plot)*"
    return f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode('ascii')})"


def report_markdown(run: dict, table: list[dict], learning_curve: bytes | None, forecast_plot: bytes | None) -> str:
    """The run's report: parameters, dataset, model, epochs, timings, metrics, and both plots (PNG) inline."""
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
              "## Learning curve", "", inline_png(learning_curve, "learning curve"), "",
              "## Forecasts", "", inline_png(forecast_plot, "forecasts"), ""]
    return "\n".join(lines)


def benchmark_markdown(title: str, table: list[dict], chart: bytes | None) -> str:
    """The benchmark's report: its chart of test sMAPE by variant and subset (PNG inline), then its table."""
    def fmt(value, digits: int) -> str:
        return "–" if value is None else f"{value:.{digits}f}"

    lines = [f"# {title}", "", inline_png(chart, "test sMAPE by variant and subset"), "",
             "| subset | variant | sMAPE | MASE | OWA | coverage 80 | MSIS 80 | coverage 95 | MSIS 95 | series | "
             "wall s | state | reference |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['subset']} | {r['variant']} | {fmt(r['smape'], 2)} | {fmt(r['mase'], 3)} | {fmt(r['owa'], 3)} | "
              f"{fmt(r.get('coverage_80'), 1)} | {fmt(r.get('msis_80'), 2)} | {fmt(r.get('coverage_95'), 1)} | "
              f"{fmt(r.get('msis_95'), 2)} | {r['n_series'] or '–'} | {fmt(r['wall_s'], 0)} | {r['state']} | "
              f"{r['anchor']} |" for r in table]
    lines += ["", "Coverage (percent of test values inside) and MSIS (M4's mean scaled interval score) are those of "
              "the conformal intervals of the run's backtest at its test cutoff, calibrated on its older cutoffs; – "
              "where the run has no backtest."]
    return "\n".join(lines + [""])

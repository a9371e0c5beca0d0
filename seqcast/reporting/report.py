"""What a run shows in the Prefect UI: its metrics beside the baselines and the book, and a Markdown report."""

from __future__ import annotations

import base64
import json

import numpy as np

from seqcast.forecasting.intervals import DEFAULT_LEVELS, level_name
from seqcast.models.registry import get_variant

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


PREDICT_COLUMNS = ("series_id", "timestamp", "step", "lo_95", "lo_80", "value", "hi_80", "hi_95")


def predict_key(variant: str, what: str) -> str:
    """A stable artifact key per variant for the predict flow's artifacts."""
    return artifact_key(variant, what).replace("forecast-", "predict-", 1)


def forecast_bands(rows: list[dict], series_ids: list[str], horizon: int
                   ) -> tuple[np.ndarray, dict[float, tuple[np.ndarray, np.ndarray]] | None]:
    """The forecasts (n, horizon) of these series from ``forecasts`` rows, and each default level's lower and upper
    bounds (n, horizon; NaN where a forecast has none), or None when no forecast has an interval."""
    where = {sid: i for i, sid in enumerate(series_ids)}
    values = np.full((len(series_ids), horizon), np.nan)
    bounds = {level: (np.full_like(values, np.nan), np.full_like(values, np.nan)) for level in DEFAULT_LEVELS}
    for row in rows:
        i = where.get(row["series_id"])
        if i is None:
            continue
        values[i, row["step"] - 1] = row["value"]
        for level, (lo, hi) in bounds.items():
            name = level_name(level)
            lo[i, row["step"] - 1] = np.nan if row[f"lo_{name}"] is None else row[f"lo_{name}"]
            hi[i, row["step"] - 1] = np.nan if row[f"hi_{name}"] is None else row[f"hi_{name}"]
    found = any(np.isfinite(lo).any() for lo, _ in bounds.values())
    return values, bounds if found else None


def forecast_table(rows: list[dict], max_series: int = 20) -> list[dict]:
    """The forecast rows of the first ``max_series`` series for a table artifact: point forecast between its
    intervals' bounds, timestamps as ISO text."""
    keep = list(dict.fromkeys(row["series_id"] for row in rows))[:max_series]
    chosen = set(keep)
    table = []
    for row in rows:
        if row["series_id"] in chosen:
            shown = {c: row[c] for c in PREDICT_COLUMNS}
            shown["timestamp"] = row["timestamp"].isoformat()
            table.append(shown)
    return table


def predict_markdown(summary: dict, scores: dict | None, table: list[dict], plot: bytes | None) -> str:
    """The predict run's report: the model, where its intervals come from and how well they covered in that
    backtest, the plot of the first series with their bands, and the first forecasts with their bounds.

    ``summary``: run_id, model_run_id, variant, dataset_id, n_series, n_rows, intervals_from; ``scores``: the
    interval backtest's ``backtest_scores`` row over all its cutoffs (coverage_80, msis_80, ...), or None.
    """
    def fmt(value, digits: int) -> str:
        return "–" if value is None else f"{value:.{digits}f}"

    lines = [f"# predict with {summary['variant']}", "", "| | |", "|---|---|",
             f"| predict run id | `{summary['run_id']}` |",
             f"| model run id | `{summary['model_run_id']}` |",
             f"| dataset id | `{summary['dataset_id'] or '(a new file)'}` |",
             f"| series, forecasts | {summary['n_series']}, {summary['n_rows']} |",
             f"| intervals from backtest | `{summary['intervals_from'] or '(none: no completed backtest)'}` |", ""]
    if summary["intervals_from"] is None:
        lines += ["The forecasts have no intervals: the run has no completed backtest on its dataset. "
                  "`seqcast backtest` with the run's options gives them.", ""]
    elif scores is not None:
        lines += ["## Intervals in their backtest", "",
                  "Conformal intervals calibrated on the backtest's scaled errors; in the backtest itself, each "
                  "cutoff's intervals (calibrated on the older cutoffs) covered:", "",
                  "| level | coverage (%) | MSIS |", "|---|---|---|",
                  f"| 80% | {fmt(scores.get('coverage_80'), 1)} | {fmt(scores.get('msis_80'), 2)} |",
                  f"| 95% | {fmt(scores.get('coverage_95'), 1)} | {fmt(scores.get('msis_95'), 2)} |", ""]
    lines += ["## Forecasts", "", inline_png(plot, "forecasts with their 80% and 95% intervals"), "",
              "| " + " | ".join(PREDICT_COLUMNS) + " |", "|---" * len(PREDICT_COLUMNS) + "|"]
    for row in table:
        cells = [fmt(row[c], 4) if c in ("lo_95", "lo_80", "value", "hi_80", "hi_95") else str(row[c])
                 for c in PREDICT_COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines + [""])

"""The rows a run records in every results table, assembled from what its stages returned; every path in them is
relative to the store's root."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pyarrow as pa
from prefect.runtime import flow_run

from seqcast.config.version import code_version
from seqcast.evaluation.backtest import BacktestParams, level_scores, summary
from seqcast.evaluation.holdout import split_scores
from seqcast.models.registry import get_variant
from seqcast.storage.home import current_store
from seqcast.storage.schemas import as_table, with_run_id
from seqcast.tasks.backtest import BacktestPlan
from seqcast.tasks.evaluate import ScoredRun
from seqcast.tasks.train import TrainedModel


def result_rows(run_id, params, dataset, trained: TrainedModel | None, model_path, base_run, scored: ScoredRun | None,
                started_at, finished_at, duration_s, error: str | None = None) -> dict[str, list[dict]]:
    """Assemble the run's rows for every results table; every path in them is relative to the store's root.

    A failed run (``error``, no ``scored``) gets its runs row, status ``failed``, and no metrics.
    """
    run_row = {
        "run_id": run_id, "flow_run_id": str(flow_run.id) if flow_run.id else None, "variant": params.variant,
        "family": get_variant(params.variant).family, "dataset_id": dataset.dataset_id,
        "horizon": params.effective_horizon, "params": json.dumps(params.model_dump()),
        "model_path": model_path, "status": "failed" if error else "completed",
        "started_at": started_at, "finished_at": finished_at, "duration_s": duration_s,
        "train_seconds": trained.train_seconds if trained else None, "epochs": trained.epochs if trained else None,
        "n_params": trained.n_params if trained else None,
        "base_run_id": base_run["run_id"] if base_run else None,
        "learning_curve_path": scored.learning_curve if scored else None,
        "forecast_plot_path": scored.forecast_plot if scored else None,
        "code_version": code_version(), "record_path": None, "error": error,
    }
    evaluation = scored.evaluation if scored else None
    return {
        "datasets": [current_store().datasets.row(dataset, started_at)],
        "runs": [run_row],
        "metrics": [{"run_id": run_id, **m} for m in evaluation.metrics] if evaluation else [],
        "history": [{"run_id": run_id, **h} for h in (trained.history if trained else [])],
        "predictions": with_run_id(run_id, evaluation.predictions) if evaluation else [],
        "series_scores": with_run_id(run_id, evaluation.series_scores) if evaluation else [],
        "step_scores": [{"run_id": run_id, **r} for r in evaluation.step_scores] if evaluation else [],
        "split_scores": [{"run_id": run_id, **r} for r in evaluation.split_scores] if evaluation else [],
    }


def backtest_rows(run_id: str, params: BacktestParams, plan: BacktestPlan, model_runs: list, rows: list[dict],
                  datasets: list, started_at, duration_s: float,
                  intervals: list[dict] | None = None, scores: list[dict] | None = None,
                  by_level: list[dict] | None = None, error: str | None = None) -> dict[str, list[dict]]:
    """The backtest's rows for every results table; a failed one (``error``) gets its backtests row only.

    ``scores`` and ``by_level``: :func:`seqcast.tasks.backtest.score_backtest`'s, stored so that the views select
    them instead of computing them."""
    store = current_store()
    row = {
        "run_id": run_id, "flow_run_id": str(flow_run.id) if flow_run.id else None, "variant": params.variant,
        "family": get_variant(params.variant).family, "dataset_id": params.dataset_id,
        "horizon": plan.forecast_params.effective_horizon, "windows": params.windows,
        "cutoff_step": params.offsets(plan.forecast_params.effective_horizon)[1] if params.windows > 1 else None,
        "refit": params.refit, "params": json.dumps(plan.forecast_params.model_dump()),
        "model_run_ids": json.dumps(model_runs), "status": "failed" if error else "completed",
        "started_at": started_at, "finished_at": datetime.now(UTC), "duration_s": duration_s,
        "n_series": len({r["series_id"] for r in rows}), "left_out": sum(c.left_out for c in plan.cutoffs),
        "code_version": code_version(), "record_path": None, "error": error,
        "levels": json.dumps(list(params.levels)),
    }
    return {"datasets": [store.datasets.row(ref, started_at) for ref in datasets], "backtests": [row],
            "backtest_forecasts": [{"run_id": run_id, **r} for r in rows] if not error else [],
            "backtest_intervals": [{"run_id": run_id, **r} for r in intervals or []] if not error else [],
            "backtest_cutoff_scores": [{"run_id": run_id, **r} for r in scores or []] if not error else [],
            "backtest_level_scores": [{"run_id": run_id, **r} for r in by_level or []] if not error else []}


def with_stored_scores(rows: dict[str, pa.Table]) -> dict[str, pa.Table]:
    """A run's rows written by a release that computed its scores in the views: the ``split_scores``,
    ``backtest_cutoff_scores`` and ``backtest_level_scores`` rows that release did not store, computed from its
    ``series_scores``, ``backtest_forecasts`` and ``backtest_intervals`` as a run records them today."""
    rows = dict(rows)

    def lacks(scores: str, source: str) -> bool:
        return source in rows and rows[source].num_rows > 0 and (scores not in rows or rows[scores].num_rows == 0)

    def keyed(table: str, source: str, found: list[dict]) -> pa.Table:
        run_id = rows[source].column("run_id")[0].as_py()
        return as_table(table, [{"run_id": run_id, **row} for row in found])

    if lacks("split_scores", "series_scores"):
        rows["split_scores"] = keyed("split_scores", "series_scores", split_scores(rows["series_scores"].to_pylist()))
    if lacks("backtest_cutoff_scores", "backtest_forecasts"):
        forecasts = rows["backtest_forecasts"].to_pylist()
        intervals = rows["backtest_intervals"].to_pylist() if "backtest_intervals" in rows else []
        rows["backtest_cutoff_scores"] = keyed("backtest_cutoff_scores", "backtest_forecasts",
                                               summary(forecasts, intervals))
        rows["backtest_level_scores"] = keyed("backtest_level_scores", "backtest_forecasts",
                                              level_scores(forecasts, intervals))
    return rows

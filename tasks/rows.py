"""The rows a run records in every results table, assembled from what its stages returned; every path in them is
relative to the store's root."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from prefect.runtime import flow_run

from seqcast.config.version import code_version
from seqcast.evaluation.backtest import BacktestParams
from seqcast.models.registry import get_variant
from seqcast.storage.home import current_store
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
        "code_version": code_version(), "record_path": f"records/{run_id}", "error": error,
    }
    evaluation = scored.evaluation if scored else None
    return {
        "datasets": [current_store().datasets.row(dataset, started_at)],
        "runs": [run_row],
        "metrics": [{"run_id": run_id, **m} for m in evaluation.metrics] if evaluation else [],
        "history": [{"run_id": run_id, **h} for h in (trained.history if trained else [])],
        "predictions": [{"run_id": run_id, **p} for p in evaluation.predictions] if evaluation else [],
        "series_scores": [{"run_id": run_id, **r} for r in evaluation.series_scores] if evaluation else [],
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
        "code_version": code_version(), "record_path": f"records/{run_id}", "error": error,
        "levels": json.dumps(list(params.levels)),
    }
    return {"datasets": [store.datasets.row(ref, started_at) for ref in datasets], "backtests": [row],
            "backtest_forecasts": [{"run_id": run_id, **r} for r in rows] if not error else [],
            "backtest_intervals": [{"run_id": run_id, **r} for r in intervals or []] if not error else [],
            "backtest_cutoff_scores": [{"run_id": run_id, **r} for r in scores or []] if not error else [],
            "backtest_level_scores": [{"run_id": run_id, **r} for r in by_level or []] if not error else []}

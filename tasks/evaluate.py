"""Stage 4: score the model and the naive baseline on the valid and test splits; draw the run's plots."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from seqcast.data import split_windows
from seqcast.metrics import forecast_errors, naive_forecast
from seqcast.models import get_variant
from seqcast.params import ForecastParams
from seqcast.plots import plot_forecasts, plot_learning_curves
from seqcast.scaling import read_scaled_split
from seqcast.settings import models_dir
from seqcast.training import forecast
from storage.datasets import DatasetRef
from storage.models import load_model, run_dir
from tasks.faults import fail_once

EVAL_SPLITS = ("valid", "test")


@dataclass
class Evaluation:
    """Metric rows, test-split prediction rows and plot paths of one run."""

    metrics: list[dict]
    predictions: list[dict]
    forecast_plot: Path
    learning_curve: Path | None

    def figure(self, split: str, predictor: str = "model", metric: str = "mse") -> float | None:
        """The whole-horizon figure, or None for a split that was not scored (e.g. an empty test split)."""
        return next((r["value"] for r in self.metrics if r["split"] == split and r["predictor"] == predictor
                     and r["metric"] == metric and r["horizon_step"] is None), None)


def score(y_true: np.ndarray, y_pred: np.ndarray, split: str, predictor: str) -> list[dict]:
    return [{"predictor": predictor, "split": split, **row} for row in forecast_errors(y_true, y_pred)]


def prediction_rows(split: str, y_true: np.ndarray, y_pred: np.ndarray) -> list[dict]:
    n, horizon = y_true.shape
    series, step = np.divmod(np.arange(n * horizon), horizon)
    return [{"split": split, "series_index": int(s), "horizon_step": int(h) + 1, "y_true": float(t), "y_pred": float(p)}
            for s, h, t, p in zip(series, step, y_true.reshape(-1), y_pred.reshape(-1))]


@task(name="evaluate-model", cache_policy=NO_CACHE)
def evaluate_model(params: ForecastParams, dataset: DatasetRef, model_path: Path | None, run_id: str,
                   history: list[dict]) -> Evaluation:
    """Forecast the horizon after every valid and test window; return MSE/MAE/RMSE rows for model and naive."""
    logger = get_run_logger()
    fail_once("evaluate", logger)  # test-only: proves a retry after training keeps the trained model
    variant = get_variant(params.variant)
    horizon = params.effective_horizon
    model = load_model(model_path) if model_path is not None else None
    metrics, predictions, plot_inputs = [], [], None
    for split in EVAL_SPLITS:
        windows, model_windows, scaler, series_ids = read_scaled_split(dataset, split)
        if len(windows) == 0:
            continue
        x, y_true = split_windows(windows, params.n_steps)
        x_model, _ = split_windows(model_windows, params.n_steps)
        # metrics in original units: the model sees scaled inputs, its outputs are scaled back
        y_pred = scaler.inverse(forecast(variant, model, x_model, horizon), series_ids)
        metrics += score(y_true, y_pred, split, "model")
        metrics += score(y_true, naive_forecast(x, horizon), split, "naive")
        if split == "test":
            predictions = prediction_rows(split, y_true, y_pred)
        else:
            plot_inputs = (x[:3, :, 0], y_true[:3], y_pred[:3])
    folder = run_dir(models_dir(), run_id)
    folder.mkdir(parents=True, exist_ok=True)
    title = f"{params.variant} · {dataset.dataset_id}"
    forecast_plot = plot_forecasts(*plot_inputs, folder / "forecast.png", title)
    curve = plot_learning_curves(history, folder / "learning_curve.png", title) if history else None
    evaluation = Evaluation(metrics, predictions, forecast_plot, curve)
    logger.info("%s valid MSE %.5f (naive %.5f)", params.variant, evaluation.figure("valid"),
                evaluation.figure("valid", "naive"))
    return evaluation

"""Scoring a run: the model and the naive baseline on the valid and test splits, in original units."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from seqcast.data.scaling import Scaler
from seqcast.data.synthetic import split_windows
from seqcast.evaluation.baselines import naive_forecast
from seqcast.evaluation.holdout import (
    SplitSeries,
    scale_free_scores,
    split_scores,
    split_window_forecasts,
    window_forecasts,
)
from seqcast.evaluation.point import forecast_errors
from seqcast.models.ensemble import median_forecast
from seqcast.models.registry import Variant
from seqcast.models.stats import Progress
from seqcast.training.fit import Diverged, forecast

EVAL_SPLITS = ("valid", "test")


@dataclass
class Evaluation:
    """Metric rows, test-split prediction rows, and the inputs of the forecast plot (three validation series);
    on a last-horizon dataset also the scale-free scores per series, per step and per split
    (``seqcast.evaluation.holdout``)."""

    metrics: list[dict]
    predictions: list[dict]
    plot_inputs: tuple[np.ndarray, np.ndarray, np.ndarray] | None
    series_scores: list[dict] = field(default_factory=list)
    step_scores: list[dict] = field(default_factory=list)
    split_scores: list[dict] = field(default_factory=list)

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


def forecast_inputs(variant: Variant, model, scaler: Scaler, inputs: np.ndarray, series_ids, horizon: int,
                    window_norm: str = "none", history: SplitSeries | None = None) -> np.ndarray:
    """A model's (or the naive baseline's) forecasts after input windows, both in original units.

    ``inputs``: (n, n_steps) values of the given series (``series_ids``: one per row, or None on the synthetic
    series). The model sees them as ``scaler`` maps them, then in the frame of ``window_norm``; its outputs are
    mapped back from both, in reverse order. Returns (n, horizon).

    An ensemble's ``model`` is a :class:`seqcast.models.ensemble.EnsembleModel`: each member forecasts the same
    inputs in its own frame (``window_norm`` is the members', not this argument), and the result is their median.

    A statistical variant (or member) forecasts each series from its history before the inputs' end instead:
    ``history`` holds it, for the series of ``series_ids``.
    """
    if variant.target == "ensemble":
        return median_forecast([forecast_inputs(m.variant, m.model, scaler, inputs, series_ids, horizon, m.window_norm,
                                                history) for m in model.members])
    if variant.target == "stats":
        if history is None:
            raise ValueError(f"variant {variant.name!r} forecasts from each series' history, which these inputs "
                             f"come without")
        return window_forecasts(variant.method, history, np.asarray(series_ids), horizon)
    x_model = scaler.transform(inputs, series_ids)[:, :, np.newaxis]
    return scaler.inverse(forecast(variant, model, x_model, horizon, window_norm), series_ids)


def evaluate(variant: Variant, model, n_steps: int, horizon: int, scaler: Scaler,
             splits: dict[str, tuple[np.ndarray, np.ndarray | None]], window_norm: str = "none",
             series: dict[str, SplitSeries] | None = None, progress: Progress | None = None) -> Evaluation:
    """Forecast the horizon after every window of each split and score model and naive, in original units.

    ``splits``: split name -> (windows (n, n_steps + horizon) in original units, series id per window or None);
    each window's inputs are forecast by :func:`forecast_inputs`. ``model`` is None for variants without one
    (naive, stats).

    ``series``: split name -> its series' history and part, on a last-horizon dataset (else None). With it, each
    split is also scored by sMAPE and MASE per series, beside Naive2; a statistical variant forecasts from it, every
    split's fits in one pass (``progress`` gets (series done, series in all) as they finish).
    """
    if variant.needs_dataset and series is None:
        raise ValueError(f"variant {variant.name!r} forecasts from each series' history: it needs a last-horizon "
                         f"dataset that stores its series' values")
    metrics, predictions, plot_inputs, series_rows, step_rows = [], [], None, [], []
    fitted = {}
    if variant.target == "stats":
        scored = {split: splits[split][1] for split in EVAL_SPLITS if len(splits[split][0])}
        fitted = split_window_forecasts(variant.method, {split: series[split] for split in scored}, scored, horizon,
                                        progress)
    for split in EVAL_SPLITS:
        windows, series_ids = splits[split]
        if len(windows) == 0:
            continue
        x, y_true = split_windows(windows, n_steps)
        y_pred = fitted[split] if split in fitted else forecast_inputs(
            variant, model, scaler, x[:, :, 0], series_ids, horizon, window_norm,
            series[split] if series is not None else None)
        if not np.isfinite(y_pred).all():
            bad = int((~np.isfinite(y_pred)).any(axis=1).sum())
            raise Diverged(f"{variant.name}: the forecasts of {bad} of {len(y_pred)} {split} windows are NaN or "
                           f"infinite, so the run has no meaningful score")
        metrics += score(y_true, y_pred, split, "model")
        metrics += score(y_true, naive_forecast(x, horizon), split, "naive")
        if series is not None:
            by_series, by_step = scale_free_scores(split, series[split], series_ids, y_pred)
            series_rows += by_series
            step_rows += by_step
        if split == "test":
            predictions = prediction_rows(split, y_true, y_pred)
        else:
            plot_inputs = (x[:3, :, 0], y_true[:3], y_pred[:3])
    return Evaluation(metrics, predictions, plot_inputs, series_rows, step_rows, split_scores(series_rows))

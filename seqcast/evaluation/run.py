"""Scoring a run: the model and the naive baseline on the valid and test splits, in original units.

A run is scored in parts (the whole dataset at once, or one shard of it per task): each part's
:func:`score_part` gives its per-window and per-series outputs as Arrow tables and its :class:`Sums`, the partial
sums every reported figure is a ratio of; :func:`evaluation` combines the parts' sums into the run's figures, which
therefore do not depend on how the series were split into parts.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from seqcast.data.scaling import Scaler
from seqcast.data.synthetic import split_windows
from seqcast.evaluation.aggregate import or_none
from seqcast.evaluation.baselines import naive_forecast
from seqcast.evaluation.holdout import (
    PREDICTORS,
    ScaleFree,
    SplitSeries,
    scale_free_steps,
    split_window_forecasts,
    window_forecasts,
)
from seqcast.evaluation.scaled import owa
from seqcast.models.ensemble import median_forecast
from seqcast.models.registry import Variant
from seqcast.models.stats import Progress
from seqcast.training.fit import Diverged, forecast

EVAL_SPLITS = ("valid", "test")
ERROR_METRICS = ("mse", "mae", "rmse")
SCALE_FREE = ("smape", "mase")


@dataclass
class Sums:
    """The partial sums of a run's figures over the windows and series of one part of it; parts add up.

    ``errors[split, predictor]``: (3, h) windows, squared errors and absolute errors per step;
    ``steps[split, predictor, metric]``: (2, h) sum and count of the known per-(series, step) scores per step;
    ``series[split, predictor, metric]``: (2,) sum and count of the known per-series means;
    ``n_series[split]``: the series scored scale-free.
    """

    errors: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)
    steps: dict[tuple[str, str, str], np.ndarray] = field(default_factory=dict)
    series: dict[tuple[str, str, str], np.ndarray] = field(default_factory=dict)
    n_series: dict[str, int] = field(default_factory=dict)

    def __add__(self, other: Sums) -> Sums:
        def added(a: dict, b: dict) -> dict:
            return {key: a[key] + b[key] if key in a and key in b else a.get(key, b.get(key))
                    for key in dict.fromkeys([*a, *b])}

        return Sums(added(self.errors, other.errors), added(self.steps, other.steps),
                    added(self.series, other.series), added(self.n_series, other.n_series))

    def to_json(self) -> dict:
        """The sums as JSON values (keys joined by ``/``), for a shard task's staged part."""
        return {"errors": {"/".join(k): v.tolist() for k, v in self.errors.items()},
                "steps": {"/".join(k): v.tolist() for k, v in self.steps.items()},
                "series": {"/".join(k): v.tolist() for k, v in self.series.items()},
                "n_series": dict(self.n_series)}

    @classmethod
    def from_json(cls, data: dict) -> Sums:
        def arrays(found: dict) -> dict:
            return {tuple(k.split("/")): np.asarray(v, dtype=np.float64) for k, v in found.items()}

        return cls(arrays(data["errors"]), arrays(data["steps"]), arrays(data["series"]),
                   {k: int(v) for k, v in data["n_series"].items()})

    def add_errors(self, split: str, predictor: str, y_true: np.ndarray, y_pred: np.ndarray) -> None:
        error = np.asarray(y_pred, dtype=np.float64) - np.asarray(y_true, dtype=np.float64)
        self.errors[split, predictor] = np.stack([np.full(error.shape[1], len(error), dtype=np.float64),
                                                  (error ** 2).sum(axis=0), np.abs(error).sum(axis=0)])

    def add_scale_free(self, found: ScaleFree) -> None:
        for (predictor, metric), steps in found.steps.items():
            known = ~np.isnan(steps)
            self.steps[found.split, predictor, metric] = np.stack([np.where(known, steps, 0.0).sum(axis=0),
                                                                   known.sum(axis=0).astype(np.float64)])
            means = found.per_series(predictor, metric)
            known = ~np.isnan(means)
            self.series[found.split, predictor, metric] = np.array([means[known].sum(), known.sum()])
        self.n_series[found.split] = len(found.series_ids)

    def metric_rows(self) -> list[dict]:
        """The ``metrics`` rows: MSE, MAE and RMSE of each split and predictor, over the whole horizon
        (``horizon_step`` None) and, for a horizon over 1, per step."""
        rows = []
        for (split, predictor), (n, squared, absolute) in self.errors.items():
            with np.errstate(invalid="ignore", divide="ignore"):
                per_step = {"mse": squared / n, "mae": absolute / n}
                whole = {"mse": squared.sum() / n.sum(), "mae": absolute.sum() / n.sum()}
            per_step["rmse"], whole["rmse"] = np.sqrt(per_step["mse"]), np.sqrt(whole["mse"])
            steps = [None, *(range(1, len(n) + 1) if len(n) > 1 else [])]
            for step in steps:
                figures = whole if step is None else {name: values[step - 1] for name, values in per_step.items()}
                rows += [{"predictor": predictor, "split": split, "metric": metric, "horizon_step": step,
                          "value": float(figures[metric])} for metric in ERROR_METRICS]
        return rows

    def step_rows(self) -> list[dict]:
        """The ``step_scores`` rows: each step's mean sMAPE and MASE over the series that have one."""
        rows = []
        for split in self.n_series:
            for predictor in PREDICTORS:
                means = {}
                for metric in SCALE_FREE:
                    total, count = self.steps[split, predictor, metric]
                    with np.errstate(invalid="ignore", divide="ignore"):
                        means[metric] = total / np.where(count == 0, np.nan, count)
                rows += [{"predictor": predictor, "split": split, "step": step + 1, "smape": float(smape),
                          "mase": or_none(mase)} for step, (smape, mase) in enumerate(zip(means["smape"],
                                                                                            means["mase"]))]
        return rows

    def split_rows(self) -> list[dict]:
        """The ``split_scores`` rows: each split's mean sMAPE and MASE over its series, the model's and Naive2's,
        OWA and the number of series."""
        rows = []
        for split, n_series in self.n_series.items():
            means = {}
            for predictor in PREDICTORS:
                for metric in SCALE_FREE:
                    total, count = self.series[split, predictor, metric]
                    means[predictor, metric] = total / count if count else np.nan
            figures = {"smape": means["model", "smape"], "mase": means["model", "mase"],
                       "naive2_smape": means["naive2", "smape"], "naive2_mase": means["naive2", "mase"]}
            figures["owa"] = owa(*figures.values())
            rows.append({"split": split, **{name: or_none(value) for name, value in figures.items()},
                         "n_series": n_series})
        return rows


@dataclass
class Part:
    """One part of a run's scoring: its sums, its test windows' predictions and its series' scale-free scores as
    Arrow tables (without the run id), and the forecast plot's inputs when the part has validation windows."""

    sums: Sums
    predictions: pa.Table
    series_scores: pa.Table | None
    plot_inputs: tuple[np.ndarray, np.ndarray, np.ndarray] | None


@dataclass
class Evaluation:
    """A run's figures (``metrics``, ``step_scores`` and ``split_scores`` rows), its test predictions and series
    scores as Arrow tables (None where a run's shard tasks staged them instead), and the inputs of the forecast plot
    (three validation series)."""

    metrics: list[dict]
    predictions: pa.Table | None
    plot_inputs: tuple[np.ndarray, np.ndarray, np.ndarray] | None
    series_scores: pa.Table | None = None
    step_scores: list[dict] = field(default_factory=list)
    split_scores: list[dict] = field(default_factory=list)

    def figure(self, split: str, predictor: str = "model", metric: str = "mse") -> float | None:
        """The whole-horizon figure, or None for a split that was not scored (e.g. an empty test split)."""
        return next((r["value"] for r in self.metrics if r["split"] == split and r["predictor"] == predictor
                     and r["metric"] == metric and r["horizon_step"] is None), None)


def evaluation(sums: Iterable[Sums], plot_inputs=None, predictions: pa.Table | None = None,
               series_scores: pa.Table | None = None) -> Evaluation:
    """The run's :class:`Evaluation` from its parts' sums."""
    total = sum(sums, Sums())
    return Evaluation(total.metric_rows(), predictions, plot_inputs, series_scores, total.step_rows(),
                      total.split_rows())


def prediction_table(split: str, y_true: np.ndarray, y_pred: np.ndarray, window_index: np.ndarray) -> pa.Table:
    """``predictions`` rows (without the run id) of a split's windows, ``window_index`` their positions in it."""
    n, horizon = y_true.shape
    return pa.table({"split": pa.array(np.full(n * horizon, split, dtype=object), pa.string()),
                     "series_index": np.repeat(np.asarray(window_index, dtype=np.int64), horizon),
                     "horizon_step": np.tile(np.arange(1, horizon + 1, dtype=np.int32), n),
                     "y_true": np.asarray(y_true, dtype=np.float64).reshape(-1),
                     "y_pred": np.asarray(y_pred, dtype=np.float64).reshape(-1)})


def series_score_table(found: ScaleFree) -> pa.Table:
    """``series_scores`` rows (without the run id): each series' mean sMAPE and MASE, the model's and Naive2's."""
    n = len(found.series_ids)
    parts = [pa.table({"predictor": pa.array([predictor] * n, pa.string()), "split": pa.array([found.split] * n,
                                                                                                pa.string()),
                       "series_id": pa.array(found.series_ids, pa.string()),
                       "smape": found.per_series(predictor, "smape"),
                       "mase": pa.array(found.per_series(predictor, "mase"), pa.float64(), from_pandas=True)})
             for predictor in PREDICTORS]
    return pa.concat_tables(parts)


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


def score_part(variant: Variant, model, n_steps: int, horizon: int, scaler: Scaler,
               splits: dict[str, tuple[np.ndarray, np.ndarray | None]], window_norm: str = "none",
               series: dict[str, SplitSeries] | None = None, progress: Progress | None = None,
               window_index: dict[str, np.ndarray] | None = None) -> Part:
    """Forecast the horizon after every window of each split and score model and naive, in original units.

    ``splits``: split name -> (windows (n, n_steps + horizon) in original units, series id per window or None);
    each window's inputs are forecast by :func:`forecast_inputs`. ``model`` is None for variants without one
    (naive, stats). ``window_index``: split -> each window's position in the whole split (default: its row here).

    ``series``: split name -> its series' history and part, on a last-horizon dataset (else None). With it, each
    split is also scored by sMAPE and MASE per series, beside Naive2; a statistical variant forecasts from it, every
    split's fits in one pass (``progress`` gets (series done, series in all) as they finish).
    """
    if variant.needs_dataset and series is None:
        raise ValueError(f"variant {variant.name!r} forecasts from each series' history: it needs a last-horizon "
                         f"dataset that stores its series' values")
    sums, plot_inputs, scored = Sums(), None, []
    predictions = prediction_table("test", np.empty((0, horizon)), np.empty((0, horizon)), np.empty(0))
    fitted = {}
    if variant.target == "stats":
        asked = {split: splits[split][1] for split in EVAL_SPLITS if len(splits[split][0])}
        fitted = split_window_forecasts(variant.method, {split: series[split] for split in asked}, asked, horizon,
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
        sums.add_errors(split, "model", y_true, y_pred)
        sums.add_errors(split, "naive", y_true, naive_forecast(x, horizon))
        if series is not None:
            found = scale_free_steps(split, series[split], series_ids, y_pred)
            if found is not None:
                sums.add_scale_free(found)
                scored.append(series_score_table(found))
        if split == "test":
            where = window_index["test"] if window_index else np.arange(len(y_true))
            predictions = prediction_table(split, y_true, y_pred, where)
        else:
            plot_inputs = (x[:3, :, 0], y_true[:3], y_pred[:3])
    return Part(sums, predictions, pa.concat_tables(scored) if scored else None, plot_inputs)


def evaluate(variant: Variant, model, n_steps: int, horizon: int, scaler: Scaler,
             splits: dict[str, tuple[np.ndarray, np.ndarray | None]], window_norm: str = "none",
             series: dict[str, SplitSeries] | None = None, progress: Progress | None = None) -> Evaluation:
    """:func:`score_part` of a whole dataset as the run's :class:`Evaluation`."""
    part = score_part(variant, model, n_steps, horizon, scaler, splits, window_norm, series, progress)
    return evaluation([part.sums], part.plot_inputs, part.predictions, part.series_scores)

"""Conformal prediction intervals from rolling-origin backtest residuals.

Method: scale-free split conformal prediction per horizon step.

* A backtest forecast's nonconformity score is its scaled error ``|actual - forecast| / scale``, where ``scale`` is
  the series' MASE scale (seasonal naive MAE) of the history known at its cutoff. Scaling makes the errors of
  series of any magnitude one population, so a backtest of a few cutoffs pools enough of them per step; raw
  errors would need ``MIN_SERIES_RESIDUALS`` per series and step, which a short backtest never has.
* Per horizon step ``s`` and level ``L`` (a percentage), the quantile is the ``ceil((n + 1) L / 100)``-th smallest
  of the ``n`` scores of that step: the split-conformal quantile, which covers a new exchangeable score with
  probability at least ``L / 100``. A step with too few scores for the level (``ceil((n + 1) L / 100) > n``) has
  no finite quantile, so no interval at that level.
* A series with at least ``MIN_SERIES_RESIDUALS`` scores of its own at a step uses its own quantile there, so a
  series much harder (or easier) than the rest gets a band of its own width; every other series the pooled one.
* The interval of a forecast is ``forecast -/+ q * scale`` of the series forecast, in original units; a series
  without a scale (a history the seasonal naive fits exactly, or one too short) gets none.

Inside a backtest the intervals of cutoff ``k`` are calibrated on the cutoffs before it in time only (``k + 1``
and older), so no interval has seen the values it is scored on; the oldest cutoff has none.

The intervals are scored by ``seqcast.evaluation.interval`` (coverage, MSIS).

Arrays: ``(m,)`` are flat per forecast row; ``(n, h)`` per series and step.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from seqcast.evaluation.scaled import seasonal_naive_scales

DEFAULT_LEVELS = (80.0, 95.0)
# per series and step: fewer own scores than this fall back to the step's pooled quantile, which more scores back
MIN_SERIES_RESIDUALS = 20


def check_levels(levels: Iterable[float]) -> tuple[float, ...]:
    """The distinct levels in ascending order; ValueError unless each is a percentage strictly inside (0, 100)."""
    found = [float(level) for level in levels]
    if not found:
        raise ValueError("give at least one interval level, e.g. 80 or 95")
    bad = [level for level in found if not (math.isfinite(level) and 0 < level < 100)]
    if bad:
        raise ValueError(f"interval levels are percentages strictly between 0 and 100 (e.g. 80, 95); got "
                         f"{', '.join(f'{level:g}' for level in bad)}")
    return tuple(sorted(set(found)))


def level_name(level: float) -> str:
    """The level as column names spell it: ``80`` for 80.0 (``lo_80``), ``97.5`` for 97.5."""
    return f"{float(level):g}"


def conformal_quantile(scores: np.ndarray, level: float) -> float:
    """The split-conformal quantile of ``scores`` (1-D, NaN ignored) at ``level`` percent: the
    ``ceil((n + 1) level / 100)``-th smallest; infinite when there are too few scores for the level."""
    scores = np.sort(np.asarray(scores, dtype=np.float64)[np.isfinite(scores)])
    n = len(scores)
    # the small tolerance keeps an exact product such as 20 * 0.95 from rounding up to the next rank
    rank = math.ceil((n + 1) * level / 100 - 1e-9)
    return float(scores[rank - 1]) if 0 < rank <= n else math.inf


@dataclass(frozen=True)
class Calibration:
    """Quantiles of scaled errors per level and horizon step: pooled over series, and a series' own where it has
    enough scores (NaN elsewhere)."""

    levels: tuple[float, ...]
    pooled: np.ndarray  # (n_levels, horizon); inf where a step has too few scores for the level
    own: dict[str, np.ndarray]  # series id -> (n_levels, horizon), NaN where the series has too few scores
    n_scores: np.ndarray  # (horizon,) scores per step

    def quantiles(self, series_id: str) -> np.ndarray:
        """(n_levels, horizon): the series' own quantile where it has one, else the step's pooled one."""
        own = self.own.get(series_id)
        return self.pooled if own is None else np.where(np.isnan(own), self.pooled, own)


def calibrate(series_ids: np.ndarray, steps: np.ndarray, scores: np.ndarray, horizon: int,
              levels: Iterable[float] = DEFAULT_LEVELS, min_series: int = MIN_SERIES_RESIDUALS) -> Calibration:
    """Quantiles of the scaled errors ``scores`` (m,) of forecast rows of ``series_ids`` (m,) at ``steps`` (m,
    1..horizon); a NaN score (a series without a scale) is left out."""
    levels = check_levels(levels)
    series_ids, steps = np.asarray(series_ids).astype(str), np.asarray(steps, dtype=np.int64)
    scores = np.asarray(scores, dtype=np.float64)
    known = np.isfinite(scores)
    series_ids, steps, scores = series_ids[known], steps[known], scores[known]
    pooled = np.full((len(levels), horizon), math.inf)
    counts = np.zeros(horizon, dtype=np.int64)
    for s in range(horizon):
        at = scores[steps == s + 1]
        counts[s] = len(at)
        pooled[:, s] = [conformal_quantile(at, level) for level in levels]
    own = {}
    names, which = np.unique(series_ids, return_inverse=True)
    cells = np.zeros((len(names), horizon + 1), dtype=np.int64)  # scores per series and step
    np.add.at(cells, (which, steps), 1)
    for i in np.flatnonzero(cells.max(axis=1) >= min_series):  # most backtests have too few cutoffs for any
        mine = which == i
        quantiles = np.full((len(levels), horizon), np.nan)
        for s in np.flatnonzero(cells[i, 1:] >= min_series):
            quantiles[:, s] = [conformal_quantile(scores[mine & (steps == s + 1)], level) for level in levels]
        own[str(names[i])] = quantiles
    return Calibration(levels, pooled, own, counts)


def _widths(q: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """Half-widths ``q * scale`` in original units (``scales`` broadcasting against ``q``); NaN where a series has
    no scale or a quantile is not finite."""
    with np.errstate(invalid="ignore"):
        width = q * np.where(np.isfinite(scales) & (scales > 0), scales, np.nan)
    return np.where(np.isfinite(width), width, np.nan)


def bounds(calibration: Calibration, series_ids: list[str], forecasts: np.ndarray, scales: np.ndarray
           ) -> dict[float, tuple[np.ndarray, np.ndarray]]:
    """Level -> (lo, hi), each (n, h) in original units, around ``forecasts`` (n, h) of series with MASE
    ``scales`` (n,); NaN where the series has no scale or the step no finite quantile."""
    forecasts = np.asarray(forecasts, dtype=np.float64)
    scales = np.asarray(scales, dtype=np.float64)
    n, horizon = forecasts.shape
    if horizon != calibration.pooled.shape[1] or scales.shape != (n,) or len(series_ids) != n:
        raise ValueError(f"expected forecasts (n, {calibration.pooled.shape[1]}) with n series ids and scales, got "
                         f"{forecasts.shape}, {len(series_ids)} ids, scales {scales.shape}")
    q = np.stack([calibration.quantiles(str(sid)) for sid in series_ids], axis=1) if n else \
        np.zeros((len(calibration.levels), 0, horizon))  # (n_levels, n, h)
    width = _widths(q, scales[None, :, None])
    return {level: (forecasts - width[i], forecasts + width[i]) for i, level in enumerate(calibration.levels)}


def backtest_bounds(cutoffs: np.ndarray, series_ids: np.ndarray, steps: np.ndarray, forecasts: np.ndarray,
                    scales: np.ndarray, scores: np.ndarray, horizon: int, levels: Iterable[float] = DEFAULT_LEVELS,
                    min_series: int = MIN_SERIES_RESIDUALS) -> dict[float, tuple[np.ndarray, np.ndarray]]:
    """Level -> (lo, hi), each (m,), for backtest forecast rows (all arrays (m,)): the rows of cutoff ``k`` are
    calibrated on the scores of cutoffs ``k + 1`` and older only; NaN where there is no interval (the oldest cutoff,
    a series without a scale, a step with too few scores)."""
    levels = check_levels(levels)
    cutoffs, series_ids = np.asarray(cutoffs, dtype=np.int64), np.asarray(series_ids).astype(str)
    steps, forecasts = np.asarray(steps, dtype=np.int64), np.asarray(forecasts, dtype=np.float64)
    scales, scores = np.asarray(scales, dtype=np.float64), np.asarray(scores, dtype=np.float64)
    found = {level: (np.full(len(cutoffs), np.nan), np.full(len(cutoffs), np.nan)) for level in levels}
    for k in np.unique(cutoffs):
        earlier = cutoffs > k
        if not earlier.any():
            continue
        calibration = calibrate(series_ids[earlier], steps[earlier], scores[earlier], horizon, levels, min_series)
        rows = np.flatnonzero(cutoffs == k)
        # one (1, h) forecast per row keeps any row order; the quantile picked is the row's own step's
        q = np.stack([calibration.quantiles(sid) for sid in series_ids[rows]], axis=1)  # (n_levels, r, h)
        q = q[:, np.arange(len(rows)), steps[rows] - 1]  # (n_levels, r)
        width = _widths(q, scales[rows])
        for i, level in enumerate(levels):
            found[level][0][rows] = forecasts[rows] - width[i]
            found[level][1][rows] = forecasts[rows] + width[i]
    return found


def history_scale(history: np.ndarray, period: int) -> float:
    """A series' MASE scale over its observed history (NaN values, gaps, left out); NaN where it has none."""
    history = np.asarray(history, dtype=np.float64)
    return float(seasonal_naive_scales([history[np.isfinite(history)]], int(period))[0])


def history_scales(values: dict[str, np.ndarray], periods: dict[str, int]) -> dict[str, float]:
    """Each series' MASE scale over all its observed steps (ingest's padding left out), from a dataset's per-step
    values (column -> array, as ``Datasets.read_series_values`` returns them): the scale around a forecast from the
    series' end."""
    frame = pd.DataFrame({"series_id": values["series_id"], "step": values["step"],
                          "value": np.asarray(values["value"], dtype=np.float64),
                          "padded": np.asarray(values["padded"], dtype=bool)})
    frame = frame[~frame["padded"]]
    found = dict.fromkeys(map(str, frame["series_id"].unique()), math.nan)  # a series with no value has no scale
    frame = frame[np.isfinite(frame["value"])].sort_values(["series_id", "step"])
    ids, starts = np.unique(frame["series_id"].to_numpy(), return_index=True)
    histories = np.split(frame["value"].to_numpy(), starts[1:]) if len(ids) else []
    scales = seasonal_naive_scales(histories, [int(periods[sid]) for sid in ids])
    return found | {str(sid): float(scale) for sid, scale in zip(ids, scales)}

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
              levels: Iterable[float] = DEFAULT_LEVELS, min_series: int = MIN_SERIES_RESIDUALS,
              pooled: np.ndarray | None = None) -> Calibration:
    """Quantiles of the scaled errors ``scores`` (m,) of forecast rows of ``series_ids`` (m,) at ``steps`` (m,
    1..horizon); a NaN score (a series without a scale) is left out.

    ``pooled`` (n_levels, horizon): the pooled quantiles when they come from more rows than these (every shard's,
    :func:`pooled_quantiles`); a series' own quantiles need only its own rows, which one shard holds.
    """
    levels = check_levels(levels)
    series_ids, steps = np.asarray(series_ids).astype(str), np.asarray(steps, dtype=np.int64)
    scores = np.asarray(scores, dtype=np.float64)
    known = np.isfinite(scores)
    series_ids, steps, scores = series_ids[known], steps[known], scores[known]
    counts = np.bincount(steps - 1, minlength=horizon)[:horizon].astype(np.int64)
    if pooled is None:
        pooled = step_quantiles(steps, scores, horizon, levels)
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
    return Calibration(levels, np.asarray(pooled, dtype=np.float64), own, counts)


def step_quantiles(steps: np.ndarray, scores: np.ndarray, horizon: int, levels: tuple[float, ...]) -> np.ndarray:
    """(n_levels, horizon): the conformal quantile of the finite ``scores`` (m,) at each step (``steps`` (m,),
    1..horizon) and level; inf where a step has too few."""
    steps, scores = np.asarray(steps, dtype=np.int64), np.asarray(scores, dtype=np.float64)
    known = np.isfinite(scores)
    steps, scores = steps[known], scores[known]
    order = np.lexsort((scores, steps))  # by step, then score: each step's scores sorted, one after another
    sorted_scores = scores[order]
    bounds = np.searchsorted(steps[order], np.arange(1, horizon + 2))
    found = np.full((len(levels), horizon), math.inf)
    for s in range(horizon):
        at = sorted_scores[bounds[s]:bounds[s + 1]]
        n = len(at)
        for i, level in enumerate(levels):
            rank = math.ceil((n + 1) * level / 100 - 1e-9)  # as conformal_quantile ranks them
            if 0 < rank <= n:
                found[i, s] = at[rank - 1]
    return found


def pooled_quantiles(cutoffs: np.ndarray, steps: np.ndarray, scores: np.ndarray, horizon: int,
                     levels: Iterable[float] = DEFAULT_LEVELS) -> dict[int, np.ndarray]:
    """Cutoff ``k`` -> (n_levels, horizon): the pooled quantiles that calibrate cutoff ``k``'s intervals, from the
    scaled errors ``scores`` of the cutoffs older than ``k`` (``cutoffs``, ``steps``, ``scores``: (m,), every
    series' rows); the oldest cutoff has none."""
    levels = check_levels(levels)
    cutoffs = np.asarray(cutoffs, dtype=np.int64)
    return {int(k): step_quantiles(steps[cutoffs > k], scores[cutoffs > k], horizon, levels)
            for k in np.unique(cutoffs) if (cutoffs > k).any()}


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
                    min_series: int = MIN_SERIES_RESIDUALS, pooled: dict[int, np.ndarray] | None = None
                    ) -> dict[float, tuple[np.ndarray, np.ndarray]]:
    """Level -> (lo, hi), each (m,), for backtest forecast rows (all arrays (m,)): the rows of cutoff ``k`` are
    calibrated on the scores of cutoffs ``k + 1`` and older only; NaN where there is no interval (the oldest cutoff,
    a series without a scale, a step with too few scores).

    ``pooled``: :func:`pooled_quantiles` of every series' rows, when these rows are some of them (one shard's): then
    only a cutoff in ``pooled`` gets intervals, and each series' own quantiles come from these rows.
    """
    levels = check_levels(levels)
    cutoffs, series_ids = np.asarray(cutoffs, dtype=np.int64), np.asarray(series_ids)
    steps, forecasts = np.asarray(steps, dtype=np.int64), np.asarray(forecasts, dtype=np.float64)
    scales, scores = np.asarray(scales, dtype=np.float64), np.asarray(scores, dtype=np.float64)
    found = {level: (np.full(len(cutoffs), np.nan), np.full(len(cutoffs), np.nan)) for level in levels}
    every = np.unique(cutoffs)
    for k in every:
        earlier = cutoffs > k
        if (pooled is None and not earlier.any()) or (pooled is not None and int(k) not in pooled):
            continue
        rows = np.flatnonzero(cutoffs == k)
        given = None if pooled is None else pooled[int(k)]
        if (every > k).sum() < min_series:  # a series has one score per older cutoff and step: none has its own
            q = step_quantiles(steps[earlier], scores[earlier], horizon, levels) if given is None else given
            q = np.asarray(q, dtype=np.float64)[:, steps[rows] - 1]
        else:
            calibration = calibrate(series_ids[earlier].astype(str), steps[earlier], scores[earlier], horizon,
                                    levels, min_series, given)
            q = row_quantiles(calibration, series_ids[rows].astype(str), steps[rows])
        width = _widths(q, scales[rows])
        for i, level in enumerate(levels):
            found[level][0][rows] = forecasts[rows] - width[i]
            found[level][1][rows] = forecasts[rows] + width[i]
    return found


def row_quantiles(calibration: Calibration, series_ids: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """(n_levels, m): the quantile of each row (``series_ids``, ``steps``: (m,)) at each level: its series' own at
    its step where there is one, else the step's pooled one."""
    steps = np.asarray(steps, dtype=np.int64)
    q = calibration.pooled[:, steps - 1]
    if calibration.own:
        names = np.array(sorted(calibration.own))
        own = np.stack([calibration.own[name] for name in names])  # (n_own, n_levels, horizon)
        at = np.minimum(np.searchsorted(names, series_ids), len(names) - 1)
        mine = np.flatnonzero(names[at] == series_ids)
        if len(mine):
            theirs = own[at[mine], :, steps[mine] - 1].T  # (n_levels, rows with an own series)
            q[:, mine] = np.where(np.isnan(theirs), q[:, mine], theirs)
    return q


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

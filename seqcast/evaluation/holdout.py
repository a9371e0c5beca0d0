"""Series by series on a last-horizon dataset: the statistical variants' forecasts and the scale-free scores.

On a dataset split with ``split='last-horizon'`` every series holds one validation and one test window, whose
targets are its validation and its test part. A split is forecast from what is known before its part, as the M
competitions do: the validation part from the training part, the test part from the training and validation parts
(for M3, the competition's ``x``). The scores are sMAPE (``seqcast.evaluation.point``) and MASE
(``seqcast.evaluation.scaled``, scaled by the seasonal naive MAE of that same history), and Naive2's, on the same
series, from which each split's OWA follows (``seqcast.evaluation.aggregate``).

Inputs: the dataset's per-step values (column -> array: ``series_id``, ``step``, ``value``, ``part``, ``padded``)
and each series' period. Padded steps are never history; a gap that ``missing='drop'`` left in the history is
skipped, and a series with a gap in a split's part is not scored on that split.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from seqcast.evaluation.aggregate import or_none, per_series, per_step, subset_scores
from seqcast.evaluation.point import smape_steps
from seqcast.evaluation.scaled import mase_steps, seasonal_naive_scales
from seqcast.models.stats import Progress, forecast_stats_groups

BEFORE = {"valid": ("train",), "test": ("train", "valid")}  # the parts known when a split is forecast
PREDICTORS = ("model", "naive2")


@dataclass(frozen=True)
class SplitSeries:
    """One split, series by series: the history known before its part, the part itself, and the period."""

    series_ids: list[str]
    history: list[np.ndarray]  # observed values before the part, float64
    actual: np.ndarray  # (n_series, h) the part
    period: np.ndarray  # (n_series,) int

    def subset(self, ids: list[str]) -> SplitSeries:
        """These series in the order of ``ids`` (each must be one of ``series_ids``)."""
        where = {sid: i for i, sid in enumerate(self.series_ids)}
        rows = [where[sid] for sid in ids]
        return SplitSeries(list(ids), [self.history[i] for i in rows], self.actual[rows].reshape(len(rows), -1),
                           self.period[rows])


def series_order(values: dict[str, np.ndarray]) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """The order that sorts a dataset's per-step values by series id, then step, and each series' [start, stop)
    rows in that order."""
    order = np.lexsort((values["step"], values["series_id"]))
    ids = values["series_id"][order]
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]]) if len(ids) else np.array([], dtype=np.int64)
    return order, [(int(a), int(b)) for a, b in zip(starts, np.r_[starts[1:], len(ids)])]


def split_series(values: dict[str, np.ndarray], periods: dict[str, int], split: str, horizon: int) -> SplitSeries:
    """The series of ``split`` (``valid`` or ``test``) whose part is ``horizon`` known values, in series id order."""
    if split not in BEFORE:
        raise ValueError(f"unknown split {split!r}; scored splits: {', '.join(BEFORE)}")
    order, runs = series_order(values)
    ids = values["series_id"][order]
    value = np.asarray(values["value"], dtype=np.float64)[order]
    part, padded = values["part"][order], np.asarray(values["padded"], dtype=bool)[order]
    found, history, actual = [], [], []
    for start, stop in runs:
        v, p = value[start:stop], part[start:stop]
        target = v[p == split]
        if len(target) != horizon or np.isnan(target).any():
            continue
        known = v[np.isin(p, BEFORE[split]) & ~padded[start:stop]]
        found.append(str(ids[start]))
        history.append(known[~np.isnan(known)])
        actual.append(target)
    return SplitSeries(found, history, np.array(actual, dtype=np.float64).reshape(len(found), horizon),
                       np.array([int(periods[sid]) for sid in found], dtype=np.int64))


def split_series_of(series_ids: Sequence[str], lengths: np.ndarray, periods: np.ndarray, value: np.ndarray,
                    parts: Mapping[str, np.ndarray], padded: np.ndarray, split: str, horizon: int) -> SplitSeries:
    """:func:`split_series` of series stored one after another (a shard's values: ``lengths`` steps each, in
    ``series_ids`` order), as whole arrays instead of series by series. ``parts``: part name -> whether each step
    is in it (every part of ``BEFORE`` and ``split``)."""
    if split not in BEFORE:
        raise ValueError(f"unknown split {split!r}; scored splits: {', '.join(BEFORE)}")
    lengths = np.asarray(lengths, dtype=np.int64)
    n = len(lengths)
    rows = np.repeat(np.arange(n), lengths)
    value = np.asarray(value, dtype=np.float64)
    missing = np.isnan(value)
    in_part = np.asarray(parts[split], dtype=bool)
    part_size = np.bincount(rows[in_part], minlength=n)
    part_missing = np.bincount(rows[in_part & missing], minlength=n)
    keep = (part_size == horizon) & (part_missing == 0)
    actual = value[in_part & keep[rows]].reshape(-1, horizon)
    before = np.logical_or.reduce([np.asarray(parts[name], dtype=bool) for name in BEFORE[split]])
    known = before & ~np.asarray(padded, dtype=bool) & ~missing & keep[rows]
    sizes = np.bincount(rows[known], minlength=n)[keep]
    history = np.split(value[known], np.cumsum(sizes)[:-1]) if len(sizes) else []
    chosen = np.flatnonzero(keep)
    return SplitSeries([str(series_ids[i]) for i in chosen], history, actual,
                       np.asarray(periods, dtype=np.int64)[chosen])


def forecast_by_period(method: str, series: SplitSeries, horizon: int, progress: Progress | None = None
                       ) -> np.ndarray:
    """``seqcast.models.stats`` method ``method`` on every series' history, each at its own period: (n_series, h)."""
    return forecast_groups(method, [series], horizon, progress)[0]


def forecast_groups(method: str, groups: Sequence[SplitSeries], horizon: int, progress: Progress | None = None
                    ) -> list[np.ndarray]:
    """:func:`forecast_by_period` of several groups of series (e.g. every split, or every cutoff) in one pass per
    period, so that the statistical fits of all of them share one process pool: one (n_series, h) per group.

    ``progress`` gets (series done, series in all groups) as the fits finish.
    """
    forecasts = [np.empty((len(group.series_ids), horizon)) for group in groups]
    total = sum(len(group.series_ids) for group in groups)
    periods = np.unique(np.concatenate([group.period for group in groups])) if groups else []
    done = 0
    for period in periods:
        rows = [np.flatnonzero(group.period == period) for group in groups]
        reported = (lambda n, _, before=done: progress(before + n, total)) if progress else None
        found = forecast_stats_groups(method, [[group.history[i] for i in r] for group, r in zip(groups, rows)],
                                      int(period), horizon, reported)
        for target, r, values in zip(forecasts, rows, found):
            target[r] = values
        done += sum(map(len, rows))
    return forecasts


def window_forecasts(method: str, series: SplitSeries, window_ids: np.ndarray, horizon: int) -> np.ndarray:
    """A statistical method's forecast for every window of a split, (n_windows, h), from its series' history.

    Raises ValueError naming a window's series that has no known part in this split.
    """
    return split_window_forecasts(method, {"": series}, {"": window_ids}, horizon)[""]


def split_window_forecasts(method: str, series: Mapping[str, SplitSeries], window_ids: Mapping[str, np.ndarray],
                           horizon: int, progress: Progress | None = None) -> dict[str, np.ndarray]:
    """:func:`window_forecasts` of several splits (split -> its series, and its windows' series ids), every split's
    fits in one pass: split -> (n_windows, h).

    Raises ValueError naming a window's series that has no known part in its split.
    """
    ids, unique = {}, {}
    for split, asked in window_ids.items():
        ids[split] = [str(sid) for sid in asked]
        missing = sorted(set(ids[split]) - set(series[split].series_ids))
        if missing:
            raise ValueError(f"series {missing[:10]} have windows but no part of {horizon} known values in this "
                             f"split, so nothing to forecast them from")
        unique[split] = sorted(set(ids[split]))
    found = forecast_groups(method, [series[split].subset(unique[split]) for split in window_ids], horizon, progress)
    result = {}
    for (split, forecasts) in zip(window_ids, found):
        where = {sid: i for i, sid in enumerate(unique[split])}
        result[split] = forecasts[[where[sid] for sid in ids[split]]].reshape(len(ids[split]), horizon)
    return result


def mase_scales(series: SplitSeries) -> np.ndarray:
    """Each series' MASE scale on its history, at its own period; NaN where it has none (too short for its lag, or
    zero)."""
    return seasonal_naive_scales(series.history, series.period)


@dataclass(frozen=True)
class ScaleFree:
    """A split's scale-free scores per (series, step): sMAPE and MASE of the forecast ("model") and of Naive2 on
    the same series, which are those with exactly one window and a known part in the split."""

    split: str
    series_ids: list[str]
    steps: dict[tuple[str, str], np.ndarray]  # (predictor, "smape" | "mase") -> (n_series, h); NaN: no MASE scale

    def per_series(self, predictor: str, metric: str) -> np.ndarray:
        return per_series(self.steps[predictor, metric])


def scale_free_steps(split: str, series: SplitSeries, window_ids: np.ndarray, y_pred: np.ndarray
                     ) -> ScaleFree | None:
    """sMAPE and MASE per (series, step) of a split's forecasts (one window per series) and of Naive2 on the same
    series; None when no series qualifies. A series seen in more than one window of the split, or without a known
    part, is left out."""
    ids = pd.Index(np.asarray(window_ids).astype(str), dtype=object)
    # hashed, not sorted: numpy's isin compares object arrays element by element
    keep = np.flatnonzero(~ids.duplicated(keep=False) & ids.isin(series.series_ids))
    ids = ids.to_numpy()
    if not len(keep):
        return None
    chosen = series.subset(ids[keep].tolist())
    horizon = chosen.actual.shape[1]
    scales = mase_scales(chosen)
    forecasts = {"model": np.asarray(y_pred, dtype=np.float64)[keep],
                 "naive2": forecast_by_period("naive2", chosen, horizon)}
    steps = {}
    for predictor in PREDICTORS:
        steps[predictor, "smape"] = smape_steps(chosen.actual, forecasts[predictor])
        steps[predictor, "mase"] = mase_steps(chosen.actual, forecasts[predictor], scales)
    return ScaleFree(split, chosen.series_ids, steps)


def scale_free_scores(split: str, series: SplitSeries, window_ids: np.ndarray, y_pred: np.ndarray
                      ) -> tuple[list[dict], list[dict]]:
    """:func:`scale_free_steps` as rows of ``series_scores`` (predictor, split, series_id, smape, mase) and of
    ``step_scores`` (predictor, split, step, smape, mase: means over series); MASE is None for a series without a
    scale."""
    found = scale_free_steps(split, series, window_ids, y_pred)
    if found is None:
        return [], []
    series_rows, step_rows = [], []
    for predictor in PREDICTORS:
        smape, mase = found.steps[predictor, "smape"], found.steps[predictor, "mase"]
        series_rows += [{"predictor": predictor, "split": split, "series_id": sid, "smape": float(s),
                         "mase": or_none(m)}
                        for sid, s, m in zip(found.series_ids, per_series(smape), per_series(mase))]
        step_rows += [{"predictor": predictor, "split": split, "step": step + 1, "smape": float(s), "mase": or_none(m)}
                      for step, (s, m) in enumerate(zip(per_step(smape), per_step(mase)))]
    return series_rows, step_rows


def split_scores(series_rows: list[dict]) -> list[dict]:
    """Each split's ``split_scores`` row from its :func:`scale_free_scores` series rows: the model's and Naive2's
    sMAPE and MASE over the split's series, OWA, and the number of series."""
    found = []
    for split in dict.fromkeys(row["split"] for row in series_rows):
        of = {predictor: [row for row in series_rows if row["split"] == split and row["predictor"] == predictor]
              for predictor in PREDICTORS}
        column = {(predictor, name): np.array([np.nan if row[name] is None else row[name] for row in rows],
                                              dtype=np.float64)
                  for predictor, rows in of.items() for name in ("smape", "mase")}
        scores = subset_scores(column["model", "smape"], column["model", "mase"], column["naive2", "smape"],
                               column["naive2", "mase"])
        found.append({"split": split, **scores, "n_series": len(of["model"])})
    return found

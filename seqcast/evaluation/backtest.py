"""Rolling-origin backtests on a last-horizon dataset: cutoffs, what is known at each, and every forecast scored.

A backtest forecasts every series from ``windows`` cutoffs. Cutoff 0 is the test cutoff (the start of each series'
test part, where the forecast flow's test scores are taken); cutoff ``k`` lies ``k * step`` steps earlier in every
series. At a cutoff, a series' history is its observed values before it and its actual values the ``horizon``
values from it on, so an earlier cutoff's actuals may lie in the validation or training part.

Every forecast is scored as the test split is (``seqcast.evaluation.holdout``): sMAPE per step, the absolute error
scaled by the seasonal naive MAE of the history known at that cutoff (MASE per step), and the same for Naive2 from that
history, from which OWA follows. Each forecast also gets conformal intervals calibrated on the cutoffs before it
(``seqcast.forecasting.intervals``), scored by coverage and MSIS (``seqcast.evaluation.interval``). A series enters
a cutoff when its history there holds at least :func:`min_history` values (enough for every statistical method and
for the MASE scale), so all variants are scored on the same series at every cutoff.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator

from seqcast.config.names import SAFE_NAME
from seqcast.evaluation.aggregate import or_none, subset_scores
from seqcast.evaluation.holdout import SplitSeries, forecast_by_period, mase_scales, series_order
from seqcast.evaluation.interval import coverage, has_interval, inside, msis, scaled_interval_scores
from seqcast.evaluation.point import smape_steps
from seqcast.evaluation.scaled import mase_steps, owa
from seqcast.forecasting.intervals import DEFAULT_LEVELS, backtest_bounds, check_levels, level_name

# statsforecast's AutoETS refuses fewer values than this on non-seasonal series ("tiny datasets"), Theta fewer
# than five; a seasonal series needs one season more than its period for the MASE scale.
MIN_HISTORY = 10
MAX_WINDOWS = 100


def min_history(period: int) -> int:
    """The fewest observed values a series needs before a cutoff to be forecast and scored there."""
    return max(MIN_HISTORY, int(period) + 1)


class BacktestParams(BaseModel):
    """What one backtest flow run does: which variant on which dataset, from how many cutoffs, how far apart."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    variant: str = Field(description="the variant to backtest")
    dataset_id: str = Field(description="an ingested dataset split with split='last-horizon'")
    windows: int = Field(3, ge=1, le=MAX_WINDOWS, description="cutoffs: the test cutoff and windows - 1 earlier ones")
    step: int | None = Field(None, ge=1, description="steps between cutoffs; default: the dataset's horizon")
    refit: bool = Field(False, description="train a model per cutoff on the values before it, instead of one "
                                           "model trained on the dataset's training part for all cutoffs")
    parameters: dict = Field(default_factory=dict, description="forecast parameters of the model (epochs, seed, "
                                                               "loss, ...), as `seqcast run` takes them")
    levels: tuple[float, ...] = Field(DEFAULT_LEVELS, description="levels (percent) of the conformal intervals "
                                                                  "around every forecast")

    @field_validator("variant", "dataset_id")
    @classmethod
    def _plain(cls, value: str, info) -> str:
        if not SAFE_NAME.match(value):
            raise ValueError(f"{info.field_name} {value!r} is not a plain name (letters, digits, '_', '.', '-')")
        return value

    @field_validator("levels", mode="before")
    @classmethod
    def _levels(cls, levels) -> tuple[float, ...]:
        return check_levels(DEFAULT_LEVELS if levels is None else levels)

    @field_validator("parameters")
    @classmethod
    def _no_own_keys(cls, parameters: dict) -> dict:
        own = sorted(set(parameters) & {"variant", "dataset_id"})
        if own:
            raise ValueError(f"parameters must not set {', '.join(own)}: they are the backtest's own")
        return parameters

    def offsets(self, horizon: int) -> list[int]:
        """Each cutoff's distance in steps before the test cutoff, cutoff 0 first."""
        return [k * (self.step or horizon) for k in range(self.windows)]


@dataclass(frozen=True)
class Cutoff:
    """The series forecast from one cutoff: what is known there, the actual values after it, and the inputs."""

    index: int  # 0: the test cutoff
    offset: int  # steps before the test cutoff
    series: SplitSeries  # history before the cutoff, the horizon's actual values after it, the period
    inputs: np.ndarray  # (n_series, n_steps) the steps before the cutoff, left-padded with the first value
    padded: np.ndarray  # (n_series,) steps of left padding each input needed
    timestamps: np.ndarray  # (n_series, horizon) datetime64[us] of the forecast steps
    left_out: int  # series with too short a history, or a gap among the actual values, at this cutoff


def cut(values: dict[str, np.ndarray], periods: dict[str, int], horizon: int, n_steps: int, index: int,
        offset: int) -> Cutoff:
    """Every series of a last-horizon dataset at the cutoff ``offset`` steps before its test part.

    ``values``: the dataset's per-step values (column -> array, as ``Datasets.read_series_values`` returns them).
    Inputs reach back over any padding ingest added (its first value repeated) and are padded the same way where
    they reach further; a gap that ``missing='drop'`` left among them is filled from the nearest earlier value,
    else the next. Series are in series id order.
    """
    return cut_series(values, periods, horizon, n_steps, [offset], first_index=index)[0]


def cut_series(values: dict[str, np.ndarray], periods: dict[str, int], horizon: int, n_steps: int,
               offsets: list[int], first_index: int = 0) -> list[Cutoff]:
    """:func:`cut` at each of ``offsets`` (cutoff ``first_index + k`` at ``offsets[k]``), every series at once:
    array operations over all series' steps, no loop over series."""
    order, starts = _series_starts(values)
    ids = np.asarray(values["series_id"])[order][starts]
    value = np.asarray(values["value"], dtype=np.float64)[order]
    is_test = np.asarray(values["part"])[order] == "test"
    padded = np.asarray(values["padded"], dtype=bool)[order]
    stamps = np.asarray(values["timestamp"]).astype("datetime64[us]")[order]
    n_series, total = len(starts), len(value)
    length = np.diff(np.r_[starts, total]).astype(np.int64)
    position = np.arange(total) - np.repeat(starts, length)  # each step's place in its series
    if n_series:
        n_test = np.add.reduceat(is_test.astype(np.int64), starts)
        test_first = np.minimum.reduceat(np.where(is_test, position, total), starts)
        # the first step ingest did not pad (0, as argmax gives, for a series padded throughout)
        first = np.minimum.reduceat(np.where(~padded, position, total), starts)
        first = np.where(first == total, 0, first)
    else:
        n_test = test_first = first = np.zeros(0, dtype=np.int64)
    missing = np.r_[0, np.cumsum(np.isnan(value))]  # NaNs before each step
    period = np.array([int(periods[str(sid)]) for sid in ids], dtype=np.int64)
    need = np.maximum(MIN_HISTORY, period + 1)
    found = []
    for k, offset in enumerate(offsets):
        at = test_first - offset
        before = np.clip(starts + np.maximum(at, first), 0, total)  # a series without a test part: anywhere
        known = np.where(at > first, at - first - (missing[before] - missing[starts + first]), 0)
        target_gaps = missing[np.clip(starts + at + horizon, 0, total)] - missing[np.clip(starts + at, 0, total)]
        keep = np.flatnonzero((n_test == horizon) & (at >= first) & (known >= need) & (target_gaps == 0))
        s, a, f = starts[keep], at[keep], first[keep]
        history = _histories(value, s + f, a - f)
        steps = s[:, None] + a[:, None] + np.arange(horizon)  # (n, horizon)
        # the inputs: the n_steps before the cutoff, the series' first step repeated where they reach before it
        window = np.maximum(s[:, None] + a[:, None] - n_steps + np.arange(n_steps), s[:, None])
        found.append(Cutoff(
            first_index + k, int(offset),
            SplitSeries([str(sid) for sid in ids[keep]], history, value[steps].reshape(len(keep), horizon),
                        period[keep]),
            _filled(value[window].reshape(len(keep), n_steps)).astype(np.float32),
            np.maximum(0, n_steps - (a - f)).astype(np.int64),
            stamps[steps].reshape(len(keep), horizon), n_series - len(keep)))
    return found


def _series_starts(values: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The order that sorts per-step values by series id, then step, and where each series starts in it."""
    order = np.lexsort((values["step"], values["series_id"]))
    ids = np.asarray(values["series_id"])[order]
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]]) if len(ids) else np.array([], dtype=np.int64)
    return order, starts.astype(np.int64)


def _histories(value: np.ndarray, begin: np.ndarray, size: np.ndarray) -> list[np.ndarray]:
    """The values ``begin[i] .. begin[i] + size[i] - 1`` of each series without their NaNs, one array each."""
    size = np.maximum(size, 0)
    ends = np.cumsum(size)
    flat = value[np.repeat(begin - (ends - size), size) + np.arange(int(ends[-1]) if len(ends) else 0)]
    known = ~np.isnan(flat)
    counts = np.diff(np.r_[0, np.cumsum(known)][np.r_[0, ends]])  # known values per series
    return np.split(flat[known], np.cumsum(counts)[:-1]) if len(size) else []


def _filled(windows: np.ndarray) -> np.ndarray:
    """(n, n_steps) windows with each NaN filled from the nearest earlier value of its row, else the next."""
    gaps = np.isnan(windows)
    if not gaps.any():
        return windows
    columns = np.arange(windows.shape[1])
    earlier = np.maximum.accumulate(np.where(gaps, 0, columns), axis=1)
    filled = np.take_along_axis(windows, earlier, axis=1)
    gaps = np.isnan(filled)  # leading NaNs: from the next value
    later = np.minimum.accumulate(np.where(gaps, windows.shape[1] - 1, columns)[:, ::-1], axis=1)[:, ::-1]
    return np.where(gaps, np.take_along_axis(filled, later, axis=1), filled)


def eligible_counts(length: np.ndarray, test_start: np.ndarray, padded: np.ndarray, period: np.ndarray,
                    horizon: int, offsets: list[int]) -> list[int]:
    """How many series each cutoff (``offsets``: steps before the test cutoff) can forecast, from the per-series
    index alone (each (n_series,): steps on the padded grid, where the test part starts, padded steps, period):
    those with a test part of ``horizon`` steps and :func:`min_history` steps before the cutoff. A gap among the
    values can only lower the count that :func:`cut` finds."""
    length, test_start = np.asarray(length, dtype=np.int64), np.asarray(test_start, dtype=np.int64)
    padded, period = np.asarray(padded, dtype=np.int64), np.asarray(period, dtype=np.int64)
    has_test = length - test_start == horizon
    need = np.maximum(MIN_HISTORY, period + 1)
    return [int((has_test & (test_start - offset - padded >= need)).sum()) for offset in offsets]


def series_index(values: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The per-series columns :func:`eligible_counts` takes (``series_id``, ``length``, ``test_start``,
    ``padded_steps``), from a dataset's per-step values: what a sharded dataset's index holds."""
    order, runs = series_order(values)
    starts = np.array([start for start, _ in runs], dtype=np.int64)
    if not len(starts):
        return {"series_id": np.array([], dtype=object), **{name: np.array([], dtype=np.int64)
                                                           for name in ("length", "test_start", "padded_steps")}}

    def per_series(flags: np.ndarray) -> np.ndarray:
        return np.add.reduceat(np.asarray(flags, dtype=np.int64)[order], starts)

    test = values["part"] == "test"
    length = np.diff(np.r_[starts, len(order)])
    return {"series_id": values["series_id"][order][starts], "length": length,
            "test_start": length - per_series(test), "padded_steps": per_series(values["padded"])}


def truncated(values: dict[str, np.ndarray], offset: int) -> dict[str, np.ndarray]:
    """The per-step values without each series' last ``offset`` steps: the data a refit at that cutoff learns from."""
    order, runs = series_order(values)
    keep = np.concatenate([order[start:max(start, stop - offset)] for start, stop in runs]) if runs \
        else order  # every series in step order, its last ``offset`` rows left out
    return {name: np.asarray(column)[keep] for name, column in values.items()}


def forecast_columns(cutoff: Cutoff, forecasts: np.ndarray) -> dict[str, np.ndarray]:
    """The ``backtest_forecasts`` columns of one cutoff, one row per series and forecast step (series after series):
    actual, forecast, Naive2, each one's sMAPE and scaled error, and the series' MASE scale there; each (n * h,).

    ``forecasts``: (n_series, horizon) in original units, in the cutoff's series order. A series whose history has
    no MASE scale (it repeats itself exactly) gets NaN as its scale and scaled errors (NULL once stored); the
    interval columns are left to :func:`interval_columns`.
    """
    series = cutoff.series
    n, horizon = series.actual.shape
    forecasts = np.asarray(forecasts, dtype=np.float64)
    if forecasts.shape != (n, horizon):
        raise ValueError(f"expected forecasts of shape {(n, horizon)}, got {forecasts.shape}")
    naive2 = forecast_by_period("naive2", series, horizon)
    scale = mase_scales(series)
    with np.errstate(invalid="ignore"):
        columns = {
            "smape": smape_steps(series.actual, forecasts), "naive2_smape": smape_steps(series.actual, naive2),
            "scaled_error": mase_steps(series.actual, forecasts, scale),
            "naive2_scaled_error": mase_steps(series.actual, naive2, scale),
        }
    per_series = np.repeat(np.arange(n), horizon)
    return {
        "cutoff": np.full(n * horizon, cutoff.index, dtype=np.int32),
        "steps_back": np.full(n * horizon, cutoff.offset, dtype=np.int32),
        "series_id": np.asarray(series.series_ids, dtype=object)[per_series],
        "step": np.tile(np.arange(1, horizon + 1, dtype=np.int32), n),
        "timestamp": np.asarray(cutoff.timestamps, dtype="datetime64[us]").reshape(-1),
        "actual": series.actual.reshape(-1).astype(np.float64), "forecast": forecasts.reshape(-1),
        "naive2": np.asarray(naive2, dtype=np.float64).reshape(-1),
        **{name: np.asarray(column, dtype=np.float64).reshape(-1) for name, column in columns.items()},
        "scale": scale[per_series].astype(np.float64),
        "padded_steps": np.asarray(cutoff.padded, dtype=np.int32)[per_series],
    }


def interval_columns(columns: dict[str, np.ndarray], levels: tuple[float, ...], horizon: int,
                     pooled: dict[int, np.ndarray] | None = None) -> dict[float, tuple[np.ndarray, np.ndarray]]:
    """Level -> (lo, hi), each (m,), the conformal interval of every forecast row of ``columns`` (all cutoffs of
    some series, as :func:`forecast_columns` builds them), calibrated on the cutoffs before its own; NaN where there
    is none (the oldest cutoff, no scale). ``pooled``: the pooled quantiles of every series when ``columns`` hold
    some of them (``seqcast.forecasting.intervals.pooled_quantiles``)."""
    return backtest_bounds(columns["cutoff"], columns["series_id"], columns["step"], columns["forecast"],
                           columns["scale"], columns["scaled_error"], horizon, levels, pooled=pooled)


def _bands(frame: pd.DataFrame, intervals: list[dict] | None) -> pd.DataFrame:
    """Each interval row (of :func:`add_intervals`) with the actual value and scale of its forecast (a row of
    ``frame``, the forecast rows')."""
    bands = pd.DataFrame(intervals or [], columns=["cutoff", "series_id", "step", "level", "lo", "hi"])
    return bands.merge(frame[["cutoff", "series_id", "step", "actual", "scale"]], on=["cutoff", "series_id", "step"])


def _interval_scores(band: pd.DataFrame, level: float) -> tuple[float, float]:
    columns = [band[c].to_numpy(dtype=np.float64, na_value=np.nan) for c in ("actual", "lo", "hi", "scale")]
    return coverage(*columns[:3]), msis(*columns, level)


def summary(rows: list[dict], intervals: list[dict] | None = None) -> list[dict]:
    """The ``backtest_cutoff_scores`` rows: sMAPE, MASE, OWA and the number of series per cutoff, then over all
    cutoffs (``cutoff`` None); with ``intervals`` (:func:`add_intervals`) each level's ``coverage_<level>`` and
    ``msis_<level>`` over the forecasts that have an interval (None at the oldest cutoff, which has none, and for a
    default level the backtest did not choose).

    Every step of every series weighs the same, which is the mean of per-series means, as all series share the
    horizon.
    """
    frame = pd.DataFrame(rows)
    return _summary(frame, _bands(frame, intervals)) if not frame.empty else []


def level_scores(rows: list[dict], intervals: list[dict]) -> list[dict]:
    """The ``backtest_level_scores`` rows: coverage and MSIS at every level of ``intervals`` (:func:`add_intervals`)
    per cutoff, then over all cutoffs (``cutoff`` None), over the forecasts that have an interval; a cutoff without
    any (the oldest) has no row."""
    frame = pd.DataFrame(rows)
    return _level_scores(_bands(frame, intervals) if not frame.empty else None)


def backtest_scores(rows: list[dict], intervals: list[dict]) -> tuple[list[dict], list[dict]]:
    """:func:`summary` and :func:`level_scores` of the same forecasts and intervals, which share one frame of each."""
    frame = pd.DataFrame(rows)
    if frame.empty:
        return [], _level_scores(None)
    bands = _bands(frame, intervals)
    return _summary(frame, bands), _level_scores(bands)


def _summary(frame: pd.DataFrame, bands: pd.DataFrame) -> list[dict]:
    groups = [(cutoff, part, bands[bands["cutoff"] == cutoff]) for cutoff, part in frame.groupby("cutoff")]
    found = []
    for cutoff, part, band in [*groups, (None, frame, bands)]:
        columns = [part[c].to_numpy(dtype=np.float64, na_value=np.nan)
                   for c in ("smape", "scaled_error", "naive2_smape", "naive2_scaled_error")]
        scores = subset_scores(*columns)
        row = {"cutoff": None if cutoff is None else int(cutoff), "smape": scores["smape"], "mase": scores["mase"],
               "owa": scores["owa"], "n_series": int(part["series_id"].nunique())}
        for level in sorted(set(DEFAULT_LEVELS) | set(bands["level"])):
            at = band[band["level"] == level]
            found_scores = _interval_scores(at, level) if len(at) else (np.nan, np.nan)
            row[f"coverage_{level_name(level)}"], row[f"msis_{level_name(level)}"] = map(or_none, found_scores)
        found.append(row)
    return found


def _level_scores(bands: pd.DataFrame | None) -> list[dict]:
    if bands is None:
        bands = pd.DataFrame(columns=["cutoff", "level", "lo", "hi"])
    bands = bands[has_interval(bands["lo"].to_numpy(dtype=np.float64, na_value=np.nan),
                               bands["hi"].to_numpy(dtype=np.float64, na_value=np.nan))]
    found = []
    for (cutoff, level), band in [*bands.groupby(["cutoff", "level"]),
                                  *(((None, level), band) for level, band in bands.groupby("level"))]:
        covered, score = _interval_scores(band, level)
        found.append({"cutoff": None if cutoff is None else int(cutoff), "level": float(level),
                      "coverage": or_none(covered), "msis": or_none(score), "n_forecasts": len(band)})
    return found


POINT_SCORES = ("smape", "scaled_error", "naive2_smape", "naive2_scaled_error")  # the means sMAPE, MASE, OWA take


@dataclass(frozen=True)
class BacktestSums:
    """Partial sums of a backtest's scores over some of its series (one shard's): they add up over shards into the
    scores of all of them (:func:`sums_scores`), so no step needs every forecast row at once."""

    levels: tuple[float, ...]
    point: np.ndarray  # (n_cutoffs, len(POINT_SCORES), 2): per cutoff and score, the sum and count of known values
    n_series: np.ndarray  # (n_cutoffs,) series forecast at each cutoff
    n_series_all: int  # series forecast at any cutoff
    bands: np.ndarray  # (n_cutoffs, n_levels, 4): rows with an interval, those inside it, sum and count of MSIS terms

    def __add__(self, other: BacktestSums) -> BacktestSums:
        if self.levels != other.levels or self.point.shape != other.point.shape:
            raise ValueError("partial sums of different backtests do not add up")
        return BacktestSums(self.levels, self.point + other.point, self.n_series + other.n_series,
                            self.n_series_all + other.n_series_all, self.bands + other.bands)


def backtest_sums(columns: dict[str, np.ndarray], bounds: dict[float, tuple[np.ndarray, np.ndarray]],
                  n_cutoffs: int, levels: tuple[float, ...]) -> BacktestSums:
    """The partial sums of the forecast rows ``columns`` (:func:`forecast_columns`, whole series) and their
    intervals ``bounds`` (:func:`interval_columns`)."""
    cutoff = np.asarray(columns["cutoff"], dtype=np.int64)

    def per_cutoff(weights: np.ndarray | None = None, where: np.ndarray | None = None) -> np.ndarray:
        at = cutoff if where is None else cutoff[where]
        return np.bincount(at, weights=None if weights is None else weights[where] if where is not None
                           else weights, minlength=n_cutoffs)[:n_cutoffs].astype(np.float64)

    point = np.zeros((n_cutoffs, len(POINT_SCORES), 2))
    for j, name in enumerate(POINT_SCORES):
        values = np.asarray(columns[name], dtype=np.float64)
        known = ~np.isnan(values)
        point[:, j, 0], point[:, j, 1] = per_cutoff(values, known), per_cutoff(where=known)
    first = np.asarray(columns["step"]) == 1  # one row per series and cutoff
    bands = np.zeros((n_cutoffs, len(levels), 4))
    actual, scale = np.asarray(columns["actual"], dtype=np.float64), np.asarray(columns["scale"], dtype=np.float64)
    for i, level in enumerate(levels):
        lo, hi = bounds[level]
        has = has_interval(lo, hi)
        terms = scaled_interval_scores(actual, lo, hi, scale, level)
        usable = np.isfinite(terms)
        bands[:, i] = np.stack([per_cutoff(where=has), per_cutoff(where=has & inside(actual, lo, hi)),
                                per_cutoff(terms, usable), per_cutoff(where=usable)], axis=1)
    return BacktestSums(tuple(levels), point, per_cutoff(where=first).astype(np.int64),
                        len(pd.unique(np.asarray(columns["series_id"])[first])), bands)


def sums_scores(sums: BacktestSums) -> tuple[list[dict], list[dict]]:
    """The ``backtest_cutoff_scores`` and ``backtest_level_scores`` rows of a backtest from its partial sums: what
    :func:`backtest_scores` computes from every row at once."""

    def means(point: np.ndarray) -> dict:
        with np.errstate(invalid="ignore", divide="ignore"):
            found = dict(zip(("smape", "mase", "naive2_smape", "naive2_mase"),
                             np.where(point[:, 1] > 0, point[:, 0] / np.where(point[:, 1] > 0, point[:, 1], 1),
                                      np.nan)))
        found["owa"] = owa(found["smape"], found["mase"], found["naive2_smape"], found["naive2_mase"])
        return {name: or_none(value) for name, value in found.items()}

    def band_scores(band: np.ndarray) -> tuple[float | None, float | None]:
        with_interval, inside_it, total, usable = band
        return (or_none(100 * inside_it / with_interval) if with_interval else None,
                or_none(total / usable) if usable else None)

    levels = sums.levels
    named = sorted(set(DEFAULT_LEVELS) | set(levels))
    groups = [(int(k), sums.point[k], int(sums.n_series[k]), sums.bands[k])
              for k in np.flatnonzero(sums.n_series)]
    cutoff_rows, level_rows = [], []
    for cutoff, point, n_series, bands in [*groups, (None, sums.point.sum(axis=0), sums.n_series_all,
                                                     sums.bands.sum(axis=0))]:
        scores = means(point)
        row = {"cutoff": cutoff, "smape": scores["smape"], "mase": scores["mase"], "owa": scores["owa"],
               "n_series": n_series}
        for level in named:
            found = band_scores(bands[levels.index(level)]) if level in levels else (None, None)
            row[f"coverage_{level_name(level)}"], row[f"msis_{level_name(level)}"] = found
        cutoff_rows.append(row)
        for i, level in enumerate(levels):
            if bands[i, 0]:
                covered, score = band_scores(bands[i])
                level_rows.append({"cutoff": cutoff, "level": float(level), "coverage": covered, "msis": score,
                                   "n_forecasts": int(bands[i, 0])})
    return cutoff_rows, level_rows


def refit_input(values: dict[str, np.ndarray], periods: dict[str, int], spec: dict, offset: int
                ) -> tuple[list, object]:
    """The series a refit at the cutoff ``offset`` steps before the test cutoff learns from, and how to cut them.

    Each series loses its last ``offset`` steps (and any padding ingest added); a series whose history there is
    too short to be scored at that cutoff is left out. The windows are cut as the dataset's own were (the
    ingest options of its ``spec``), so the derived dataset's test part is the horizon after the cutoff.
    Returns (``seqcast.data.ingest.Series`` list, ``IngestParams``).
    """
    from seqcast.data.ingest import IngestParams, Series, padding_for

    columns = spec["columns"]
    benchmark = spec.get("benchmark")
    frequency, horizon = spec["frequency"], spec["horizon"]
    params = IngestParams(
        source=None if benchmark else spec["source"], benchmark=benchmark,
        name=f"{spec.get('name') or 'dataset'}.cutoff-{offset}", id_column=columns["id"], time_column=columns["time"],
        value_column=columns["value"], freq=spec.get("declared_frequency"), missing=spec["missing"],
        n_steps=spec["n_steps"], horizon=horizon, split="last-horizon", short_series=spec.get("short_series"),
        scaling=spec["scaling"])
    kept = truncated(values, offset)
    observed = {name: np.asarray(column)[~np.asarray(kept["padded"], dtype=bool)] for name, column in kept.items()}
    order, runs = series_order(observed)
    ids = observed["series_id"][order]
    stamps = observed["timestamp"].astype("datetime64[ns]")[order]
    value = np.asarray(observed["value"], dtype=np.float64)[order]
    series = []
    for start, stop in runs:
        sid = str(ids[start])
        if stop - start < min_history(periods[sid]) + horizon:
            continue
        # a series the cutoff still forecasts may be too short for a window in each of the training, validation
        # and test parts once its last steps are gone (M3's shortest, at an early cutoff): the refit model learns
        # without it, and it is forecast with statistics of its own history (:func:`cutoff_scaling`)
        pad = padding_for(stop - start, params)
        if pad is None or (pad and params.short_series != "pad"):
            continue
        freq = frequency if isinstance(frequency, str) else frequency[sid]
        series.append(Series(sid, freq, pd.DatetimeIndex(stamps[start:stop]), value[start:stop]))
    return series, params


def cutoff_scaling(scaling: dict | None, cutoff: Cutoff) -> dict | None:
    """The model's scaling (``Scaler.to_dict()``), with per-series statistics added for the series of ``cutoff``
    it has none of, fit on their history known there as ingest fits a series on its training part: a refit's
    dataset leaves out a series too short to be cut into every part, which the cutoff still forecasts."""
    if not scaling or scaling.get("mode") != "series":
        return scaling
    missing = {sid: history for sid, history in zip(cutoff.series.series_ids, cutoff.series.history)
               if sid not in scaling["stats"]}
    if not missing:
        return scaling
    from seqcast.data.scaling import fit_scaler

    added = fit_scaler("series", missing).to_dict()["stats"]
    return {**scaling, "stats": {**scaling["stats"], **added}}

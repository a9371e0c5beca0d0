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
from seqcast.evaluation.interval import coverage, has_interval, msis
from seqcast.evaluation.point import smape_steps
from seqcast.evaluation.scaled import mase_steps
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
    order, runs = series_order(values)
    ids = values["series_id"][order]
    value = np.asarray(values["value"], dtype=np.float64)[order]
    part, padded = values["part"][order], np.asarray(values["padded"], dtype=bool)[order]
    stamps = np.asarray(values["timestamp"]).astype("datetime64[us]")[order]
    found, history, actual, period, inputs, pads, times, left_out = [], [], [], [], [], [], [], 0
    for start, stop in runs:
        v, p, pad = value[start:stop], part[start:stop], padded[start:stop]
        test = np.flatnonzero(p == "test")
        if len(test) != horizon:  # no test part of the horizon's length: the series has no test cutoff
            left_out += 1
            continue
        at = int(test[0]) - offset
        first = int(np.argmax(~pad))
        known = v[first:max(at, first)]
        known = known[~np.isnan(known)]
        sid = str(ids[start])
        target = v[at:at + horizon] if at >= first else np.array([])
        if len(known) < min_history(periods[sid]) or len(target) != horizon or np.isnan(target).any():
            left_out += 1
            continue
        window = v[max(at - n_steps, 0):at]
        if np.isnan(window).any():  # a gap: filled from the nearest earlier value, else the next
            window = pd.Series(window).ffill().bfill().to_numpy()
        fill = n_steps - len(window)
        found.append(sid)
        history.append(known)
        actual.append(target)
        period.append(int(periods[sid]))
        inputs.append(np.r_[np.full(fill, window[0]), window])
        pads.append(max(0, n_steps - (at - first)))
        times.append(stamps[start:stop][at:at + horizon])
    n = len(found)
    return Cutoff(index, offset, SplitSeries(found, history, np.array(actual).reshape(n, horizon),
                                             np.array(period, dtype=np.int64)),
                  np.array(inputs, dtype=np.float32).reshape(n, n_steps), np.array(pads, dtype=np.int64),
                  np.array(times, dtype="datetime64[us]").reshape(n, horizon), left_out)


def truncated(values: dict[str, np.ndarray], offset: int) -> dict[str, np.ndarray]:
    """The per-step values without each series' last ``offset`` steps: the data a refit at that cutoff learns from."""
    order, runs = series_order(values)
    keep = np.concatenate([order[start:max(start, stop - offset)] for start, stop in runs]) if runs \
        else order  # every series in step order, its last ``offset`` rows left out
    return {name: np.asarray(column)[keep] for name, column in values.items()}


def forecast_rows(cutoff: Cutoff, forecasts: np.ndarray) -> list[dict]:
    """One row per series and forecast step: actual, forecast, Naive2, each one's sMAPE and scaled error, and the
    series' MASE scale there.

    ``forecasts``: (n_series, horizon) in original units, in the cutoff's series order. A series whose history has
    no MASE scale (it repeats itself exactly) gets None as its scale and scaled errors.
    """
    series = cutoff.series
    n, horizon = series.actual.shape
    if forecasts.shape != (n, horizon):
        raise ValueError(f"expected forecasts of shape {(n, horizon)}, got {forecasts.shape}")
    naive2 = forecast_by_period("naive2", series, horizon)
    scale = mase_scales(series)
    scales = scale[:, None]  # (n_series, 1)
    smape, naive2_smape = smape_steps(series.actual, forecasts), smape_steps(series.actual, naive2)
    scaled, naive2_scaled = mase_steps(series.actual, forecasts, scale), mase_steps(series.actual, naive2, scale)
    rows = []
    for i, sid in enumerate(series.series_ids):
        for s in range(horizon):
            rows.append({
                "cutoff": cutoff.index, "steps_back": cutoff.offset, "series_id": sid, "step": s + 1,
                "timestamp": cutoff.timestamps[i, s].item(), "actual": float(series.actual[i, s]),
                "forecast": float(forecasts[i, s]), "naive2": float(naive2[i, s]), "smape": float(smape[i, s]),
                "naive2_smape": float(naive2_smape[i, s]), "scaled_error": or_none(scaled[i, s]),
                "naive2_scaled_error": or_none(naive2_scaled[i, s]), "scale": or_none(scales[i, 0]),
                "padded_steps": int(cutoff.padded[i]),
            })
    return rows


def add_intervals(rows: list[dict], levels: tuple[float, ...], horizon: int) -> list[dict]:
    """Give every forecast row (of :func:`forecast_rows`, all cutoffs) its conformal interval at each level,
    calibrated on the cutoffs before its own; return them as ``backtest_intervals`` rows (cutoff, series_id, step,
    level, lo, hi), one per row and level, None where there is none (the oldest cutoff, no scale).

    The rows gain ``lo_80, hi_80, lo_95, hi_95`` (None for a default level not among ``levels``).
    """
    if not rows:
        return []
    frame = pd.DataFrame(rows)
    found = backtest_bounds(frame["cutoff"].to_numpy(), frame["series_id"].to_numpy(), frame["step"].to_numpy(),
                            frame["forecast"].to_numpy(), frame["scale"].to_numpy(dtype=np.float64, na_value=np.nan),
                            frame["scaled_error"].to_numpy(dtype=np.float64, na_value=np.nan), horizon, levels)
    for level in DEFAULT_LEVELS:
        lo, hi = found.get(level, (np.full(len(rows), np.nan),) * 2)
        for row, low, high in zip(rows, lo, hi):
            row[f"lo_{level_name(level)}"], row[f"hi_{level_name(level)}"] = or_none(low), or_none(high)
    return [{"cutoff": row["cutoff"], "series_id": row["series_id"], "step": row["step"], "level": level,
             "lo": or_none(lo[i]), "hi": or_none(hi[i])}
            for level, (lo, hi) in found.items() for i, row in enumerate(rows)]


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

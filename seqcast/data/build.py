"""From regular series to a dataset: chronological parts, left padding, scaling statistics, the per-series index.

The windows are not built here: a dataset stores each series' values once, and windows are cut from them on demand
(:mod:`seqcast.data.windows`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa

from seqcast.data import m3, windows
from seqcast.data.checks import IngestError, fail
from seqcast.data.regular import Series
from seqcast.data.scaling import GLOBAL_KEY, Scaler, fit_scaler
from seqcast.data.synthetic import dataset_id_for

if TYPE_CHECKING:
    from seqcast.data.ingest import IngestParams

BENCHMARKS: dict[str, str] = {f"m3-{subset}": subset for subset in m3.SUBSETS}  # benchmark -> M3 subset
PARTS = windows.PARTS
PART_NAMES = {"train": "training", "valid": "validation", "test": "test"}


def part_starts(lengths: np.ndarray, params: IngestParams) -> tuple[np.ndarray, np.ndarray]:
    """Where the validation and the test part start in series of the given lengths (arrays of step counts).

    ``fractions``: the last test_fraction of the steps are test, the valid_fraction before them validation.
    ``last-horizon``: the last ``horizon`` steps are test, the ``horizon`` before them validation; a part a series
    is too short for is empty, and so holds no window.
    """
    if params.split == "last-horizon":
        return np.maximum(0, lengths - 2 * params.horizon), np.maximum(0, lengths - params.horizon)
    n_valid = np.round(lengths * params.valid_fraction).astype(np.int64)  # half to even, as Python's round
    n_test = np.round(lengths * params.test_fraction).astype(np.int64)
    return lengths - n_valid - n_test, lengths - n_test


def part_bounds(length: int, params: IngestParams) -> list[tuple[int, int]]:
    """Chronological [start, stop) step ranges of the training, validation and test parts of one series."""
    valid_start, test_start = (int(a[0]) for a in part_starts(np.array([length]), params))
    return [(0, valid_start), (valid_start, test_start), (test_start, length)]


def needs_windows(params: IngestParams) -> tuple[str, ...]:
    """The parts every series must hold a window in: all three, but no test part under test_fraction=0."""
    return PARTS if params.split == "last-horizon" or params.test_fraction > 0 else PARTS[:2]


def padding_for(length: int, params: IngestParams) -> int | None:
    """The fewest steps of left padding that give every needed part a complete window; None: more than n_steps.

    A window's targets start ``n_steps`` or more steps into the series, so padding of at most ``n_steps`` steps
    fills inputs only: no target is ever a padded value.
    """
    n, width = params.n_steps, params.window_length
    lengths = length + np.arange(n + 1)  # every padding allowed, checked at once
    valid_start, test_start = part_starts(lengths, params)
    # a part [start, stop) holds a window when its inputs, reaching back n_steps before start, and targets fit
    fits = {"train": valid_start >= width, "valid": test_start - np.maximum(0, valid_start - n) >= width,
            "test": lengths - np.maximum(0, test_start - n) >= width}
    ok = np.logical_and.reduce([fits[p] for p in needs_windows(params)])
    return int(np.argmax(ok)) if ok.any() else None


def left_padded(s: Series, pad: int) -> tuple[pd.DatetimeIndex, np.ndarray]:
    """The series' grid and values with ``pad`` earlier steps holding its first observed value."""
    if pad == 0:
        return s.timestamps, s.values
    try:
        before = pd.date_range(end=s.timestamps[0], periods=pad + 1, freq=s.freq)[:-1]
    except (OverflowError, pd.errors.OutOfBoundsDatetime):
        raise IngestError(f"series {s.series_id!r}: padding it by {pad} steps of {s.freq!r} would start before "
                          f"the earliest representable timestamp") from None
    first = s.values[np.flatnonzero(~np.isnan(s.values))[0]]  # under missing='drop' the first value may be NaN
    return before.append(s.timestamps), np.r_[np.full(pad, first), s.values]


def part_windows(values: np.ndarray, start: int, stop: int, n_steps: int, horizon: int
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Every complete window whose ``horizon`` targets lie inside [start, stop): (n, width) values, start steps.

    Inputs may reach back before ``start`` (the history known when the part's first target is forecast),
    never targets: so training windows end before validation targets begin, and validation before test.
    """
    width = n_steps + horizon
    first = max(0, start - n_steps)
    if stop - first < width:
        return np.empty((0, width)), np.empty(0, dtype=np.int64)
    windows = np.lib.stride_tricks.sliding_window_view(values[first:stop], width)
    keep = ~np.isnan(windows).any(axis=1)  # under missing='drop' no window spans a gap
    return windows[keep], first + np.flatnonzero(keep)


def interpolate_within_parts(values: np.ndarray, bounds: list[tuple[int, int]]) -> np.ndarray:
    """Fill interior gaps linearly inside each part alone: a gap at a part boundary stays a gap (its windows drop)."""
    filled = values.copy()
    for start, stop in bounds:
        filled[start:stop] = pd.Series(values[start:stop]).interpolate(method="linear", limit_area="inside")
    return filled


def latest_input(values: np.ndarray, n_steps: int) -> int | None:
    """The forecast origin: ``len(values)`` when the series' last ``n_steps`` values are all known, else None.

    A forecast continues the series from its end. Under ``missing='drop'`` a gap among the last ``n_steps`` steps
    leaves no input for that: an older complete window would put the forecasts on dates already observed.
    """
    if len(values) < n_steps or np.isnan(values[len(values) - n_steps:]).any():
        return None
    return len(values)


@dataclass
class PreparedDataset:
    """Everything a dataset store persists for an ingested file: every series' values once, and one row per series.

    The windows are not stored: ``splits`` and ``extra`` cut them from ``values`` on demand
    (:mod:`seqcast.data.windows`), as readers of a stored dataset do.
    """

    dataset_id: str
    spec: dict
    series: pa.Table  # one row per series, in series id order (SERIES_SCHEMA)
    values: pa.Table  # one row per step of every series, series after series in id order (VALUES_SCHEMA)
    scaler: Scaler

    @cached_property
    def _cuts(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Part -> (window starts in ``values``, each window's series row)."""
        return part_cuts(self.values.column("value").to_numpy(), self.series, self.spec)

    @property
    def splits(self) -> dict[str, np.ndarray]:
        """Part -> (n, n_steps + horizon) float32 windows, original units."""
        values, width = self.values.column("value").to_numpy(), self.spec["n_steps"] + self.spec["horizon"]
        return {p: windows.cut(values, starts, width) for p, (starts, _) in self._cuts.items()}

    @property
    def extra(self) -> dict[str, dict[str, np.ndarray]]:
        """Part -> per-window ``series_id``, ``window_start``, ``target_start``, ``window_end``."""
        ids = self.series.column("series_id").to_numpy(zero_copy_only=False)
        stamps = self.values.column("timestamp").to_numpy()
        return {p: window_columns(ids, stamps, starts, rows, self.spec["n_steps"], self.spec["horizon"])
                for p, (starts, rows) in self._cuts.items()}

    @property
    def shapes(self) -> dict[str, list[int]]:
        width = self.spec["n_steps"] + self.spec["horizon"]
        return {p: [len(starts), width] for p, (starts, _) in self._cuts.items()}


def part_cuts(values: np.ndarray, series: pa.Table, spec: dict) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Part -> (window starts in ``values``, series rows) for series stored one after another in index order."""
    lengths = series.column("length").to_numpy()
    offsets = np.cumsum(lengths) - lengths
    valid_start, test_start = series.column("valid_start").to_numpy(), series.column("test_start").to_numpy()
    return {p: windows.window_starts(values, offsets, *windows.part_bounds(lengths, valid_start, test_start, p),
                                     spec["n_steps"], spec["horizon"]) for p in PARTS}


def window_columns(ids: np.ndarray, stamps: np.ndarray, starts: np.ndarray, rows: np.ndarray, n_steps: int,
                   horizon: int) -> dict[str, np.ndarray]:
    """The per-window columns of windows starting at ``starts`` in a values table whose timestamps are ``stamps``."""
    return {"series_id": ids[rows].astype(object), "window_start": stamps[starts],
            "target_start": stamps[starts + n_steps], "window_end": stamps[starts + n_steps + horizon - 1]}


def data_hash(series: list[Series]) -> str:
    digest = hashlib.sha256()
    for s in series:
        digest.update(f"{s.series_id}\0{s.freq}\0".encode())
        digest.update(s.timestamps.asi8.tobytes())
        digest.update(s.values.tobytes())
    return "sha256:" + digest.hexdigest()


def scaling_problems(series: list[Series], scaler: Scaler) -> list[str]:
    """Series whose statistics, or whose stored (float32) values once scaled, are not finite numbers.

    The scaling is monotonic, so a series' smallest and largest values bound every scaled value of its windows.
    """
    if not series:
        return []
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        extremes = np.array([[np.nanmin(v), np.nanmax(v)] for v in (s.values.astype(np.float32) for s in series)])
        scaled = scaler.transform(extremes, [s.series_id for s in series])  # one call for the whole panel
    fallback = scaler.stats.get(GLOBAL_KEY, (0.0, 1.0))
    stats = np.array([scaler.stats.get(s.series_id, fallback) for s in series], dtype=np.float64)
    bad = ~(np.isfinite(scaled).all(axis=1) & np.isfinite(stats).all(axis=1) & (stats[:, 1] > 0))
    return [f"series {series[i].series_id!r}: scaling its values ({scaler.mode}: mean {stats[i, 0]:g}, std "
            f"{stats[i, 1]:g} of the training part) gives numbers float32 cannot hold; rescale the series or choose "
            f"scaling='none'" for i in np.flatnonzero(bad)]


def short_series_problem(s: Series, params: IngestParams) -> str:
    return (f"series {s.series_id!r} has {len(s.values)} steps ({s.timestamps[0]} .. {s.timestamps[-1]}), too few "
            f"even with padding: padding fills at most n_steps ({params.n_steps}) input steps, never a target, "
            f"and that leaves some part without a complete window (n_steps {params.n_steps} + horizon "
            f"{params.horizon}); use a longer series or smaller windows")


def build_dataset(series: list[Series], params: IngestParams) -> PreparedDataset:
    """Cut every series into windows, part by part, and fit the scaler on the training parts only.

    Under ``short_series='pad'`` a series too short for a window in every part is first left-padded with its
    first observed value, as little as that needs; padded steps are inputs only, and stay out of the scaler.
    """
    problems = []
    rows, training_values, padded = [], {}, {}
    steps = {k: [] for k in VALUES_SCHEMA.names}
    remedies = ["a longer series", "smaller windows", *(["larger fractions"] if params.split == "fractions" else []),
                *(["short_series='pad'"] if params.short_series == "fail" else [])]
    hint = f"use {', '.join(remedies[:-1])} or {remedies[-1]}"
    for s in series:
        pad = padding_for(len(s.values), params) if params.short_series == "pad" else 0
        if pad is None:
            problems.append(short_series_problem(s, params))
            continue
        if pad:
            padded[s.series_id] = pad
        timestamps, raw = left_padded(s, pad)
        bounds = part_bounds(len(raw), params)
        values = interpolate_within_parts(raw, bounds) if params.missing == "interpolate" else raw
        for part, (start, stop) in zip(PARTS, bounds):
            if part not in needs_windows(params):
                continue
            counts = windows.window_counts(values, [0], [start], [stop], params.n_steps, params.horizon)
            if counts[0] == 0:
                span = f"{timestamps[start]} .. {timestamps[stop - 1]}" if stop > start else "empty"
                problems.append(f"series {s.series_id!r}: its {PART_NAMES[part]} part ({stop - start} steps, {span}) "
                                f"holds the targets of no complete window (n_steps {params.n_steps} + horizon "
                                f"{params.horizon}); {hint}")
        training_values[s.series_id] = values[pad:bounds[0][1]]  # observed values only
        steps["series_id"].append(np.full(len(values), s.series_id, dtype=object))
        steps["step"].append(np.arange(len(values)))
        steps["timestamp"].append(timestamps.to_numpy(dtype="datetime64[us]"))
        steps["value"].append(values)
        steps["part"].append(np.repeat(np.array(PARTS, dtype=object), [stop - start for start, stop in bounds]))
        steps["padded"].append(np.arange(len(values)) < pad)
        origin = latest_input(values, params.n_steps)
        rows.append({"series_id": s.series_id, "frequency": s.freq, "period": period_of(s.freq, params),
                     "first_timestamp": s.timestamps[0],
                     "last_timestamp": s.timestamps[-1], "n_steps_total": len(s.values), "padded_steps": pad,
                     "train_end": timestamps[bounds[0][1] - 1], "valid_end": timestamps[bounds[1][1] - 1],
                     "latest_end": timestamps[origin - 1] if origin else None,
                     "latest": values[origin - params.n_steps:origin].astype(np.float32).tolist() if origin
                     else None,
                     "length": len(values), "valid_start": bounds[1][0], "test_start": bounds[2][0]})
    fail(problems)

    scaler = fit_scaler(params.scaling, training_values)
    fail(scaling_problems(series, scaler))
    for row in rows:
        row["mean"], row["std"] = scaler.stats.get(row["series_id"], (None, None))
    table = pa.Table.from_pylist(rows, schema=SERIES_SCHEMA)
    values_table = pa.table({k: np.concatenate(v) for k, v in steps.items()}, schema=VALUES_SCHEMA) if rows \
        else VALUES_SCHEMA.empty_table()

    freqs = sorted({s.freq for s in series})
    spec = {
        "kind": "ingested", "name": params.name, "source": params.origin, "benchmark": params.benchmark,
        "columns": {"id": params.id_column, "time": params.time_column, "value": params.value_column},
        "missing": params.missing, "frequency": freqs[0] if len(freqs) == 1 else {s.series_id: s.freq for s in series},
        "declared_frequency": params.freq, "n_series": len(series), "n_steps": params.n_steps,
        "horizon": params.horizon, "split": params.split, "valid_fraction": params.valid_fraction,
        "test_fraction": params.test_fraction, "short_series": params.short_series, "padded_steps": padded,
        "scaling": params.scaling, "data_hash": data_hash(series),
    }
    # content-addressed: the same data cut the same way gets the same id, wherever the file lives. The keys added
    # with the last-horizon split, padding and benchmarks count only away from their defaults, so a file ingested
    # as before keeps the id it had.
    identity = {k: v for k, v in spec.items()
                if k not in ("name", "source") and not (k in LATER_KEYS and v == LATER_KEYS[k])}
    return PreparedDataset(dataset_id_for(identity), spec, table, values_table, scaler)


# spec keys that datasets ingested before them lack, with the values those datasets had
LATER_KEYS = {"benchmark": None, "split": "fractions", "short_series": "fail", "padded_steps": {}}


SERIES_SCHEMA = pa.schema([
    ("series_id", pa.string()), ("frequency", pa.string()), ("period", pa.int64()),
    ("first_timestamp", pa.timestamp("us")),
    ("last_timestamp", pa.timestamp("us")), ("n_steps_total", pa.int64()), ("padded_steps", pa.int64()),
    ("train_end", pa.timestamp("us")),
    ("valid_end", pa.timestamp("us")), ("latest_end", pa.timestamp("us")), ("latest", pa.list_(pa.float32())),
    ("mean", pa.float64()), ("std", pa.float64()),
    # where the series' parts start on its (padded) grid of ``length`` steps: the windows are cut from these
    ("length", pa.int64()), ("valid_start", pa.int64()), ("test_start", pa.int64()),
])


# Every step of every series as the windows see it: padded steps included (``padded``), NaN where missing='drop'
# left a gap, interpolated values where missing='interpolate' filled one. ``step`` counts from 0 on the padded grid;
# ``part`` is the split the step belongs to.
VALUES_SCHEMA = pa.schema([
    ("series_id", pa.string()), ("step", pa.int64()), ("timestamp", pa.timestamp("us")), ("value", pa.float64()),
    ("part", pa.string()), ("padded", pa.bool_()),
])

# The season length of a series on each frequency (pandas offset name, before any anchor such as -SUN or -JAN):
# a year of months or quarters, a week of days, a year of weeks, a day of hours. Any other frequency, and a multiple
# of one of these (2D, 3h), is taken as non-seasonal.
SEASON_LENGTHS = {"MS": 12, "ME": 12, "M": 12, "BMS": 12, "BME": 12, "QS": 4, "QE": 4, "Q": 4, "BQS": 4, "BQE": 4,
                  "D": 7, "W": 52, "h": 24, "H": 24}


def season_length(freq: str) -> int:
    """The season length of a series on pandas frequency ``freq`` (see ``SEASON_LENGTHS``); 1 when unknown."""
    offset = pd.tseries.frequencies.to_offset(freq)
    if offset.n != 1:
        return 1
    return SEASON_LENGTHS.get(offset.name.split("-")[0], 1)


def period_of(freq: str, params: IngestParams) -> int:
    """A series' period: a benchmark's own (M3 states it per subset), else the season length of its frequency."""
    if params.benchmark is not None:
        return m3.SUBSETS[BENCHMARKS[params.benchmark]].period
    return season_length(freq)


def future_timestamps(last: pd.Timestamp, freq: str, horizon: int) -> pd.DatetimeIndex:
    """The ``horizon`` timestamps after ``last`` on the series' frequency."""
    return pd.date_range(last, periods=horizon + 1, freq=freq)[1:]

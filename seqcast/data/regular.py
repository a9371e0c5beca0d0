"""Each series on its regular grid: its frequency (given, or inferred per series) and the missing-value policy."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from seqcast.data.checks import IngestError, fail, parse_rows

if TYPE_CHECKING:
    from seqcast.data.ingest import IngestParams

# a series' regular grid is built in memory: timestamps far apart on a fine step (nanoseconds over years) would
# not fit
MAX_GRID_STEPS = 10_000_000


@dataclass
class Series:
    """One validated series on its regular grid: values (NaN where missing under ``drop``) in original units."""

    series_id: str
    freq: str
    timestamps: pd.DatetimeIndex
    values: np.ndarray  # (length,) float64


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

"""Each series on its regular grid: its frequency (given, or inferred per series) and the missing-value policy."""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from seqcast.data.checks import CHECK_SERIES, IngestError, fail, parse_rows

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
    found, problems, keys = [], [], []
    for sid, group in parsed.groupby("series_id", sort=True, observed=True):  # sorted by id and time
        try:
            found.append(regular_series(str(sid), group, params, min_length))
        except IngestError as exc:
            problems.append(str(exc))
            keys.append(str(sid))
    fail(problems, keys, CHECK_SERIES)
    return found


@dataclass
class Panel:
    """Regular series one after another, in series id order: ``n`` series, ``total`` steps.

    ``stamps`` (total,) datetime64[ns] and ``values`` (total,) float64 (NaN where ``missing='drop'`` left a gap, or
    before interpolation) hold series ``i`` at ``offsets[i]`` to ``offsets[i] + lengths[i] - 1``, unpadded.
    """

    ids: np.ndarray  # (n,) str
    freqs: np.ndarray  # (n,) str, pandas frequency alias per series
    lengths: np.ndarray  # (n,) int64
    stamps: np.ndarray  # (total,) datetime64[ns]
    values: np.ndarray  # (total,) float64
    known_hash: str | None = None  # the data hash when the series it was made of had it already

    @cached_property
    def data_hash(self) -> str:
        """:func:`data_hash` of the panel's series; computed when first asked for (a shard of a panel needs none:
        the dataset's hash covers the whole panel)."""
        return self.known_hash or panel_data_hash(self.ids, self.freqs, self.lengths, self.stamps, self.values)

    @property
    def offsets(self) -> np.ndarray:
        return np.cumsum(self.lengths) - self.lengths

    def series(self) -> list[Series]:
        """The panel as one :class:`Series` per series (for callers that take them one by one)."""
        return [Series(str(sid), str(freq), pd.DatetimeIndex(self.stamps[a:a + n]), self.values[a:a + n])
                for sid, freq, a, n in zip(self.ids, self.freqs, self.offsets.tolist(), self.lengths.tolist(),
                                           strict=True)]


def data_hash(series: list[Series]) -> str:
    digest = hashlib.sha256()
    for s in series:
        digest.update(f"{s.series_id}\0{s.freq}\0".encode())
        digest.update(s.timestamps.asi8.tobytes())
        digest.update(s.values.tobytes())
    return "sha256:" + digest.hexdigest()


def panel_data_hash(ids, freqs, lengths: np.ndarray, stamps: np.ndarray, values: np.ndarray) -> str:
    """:func:`data_hash` of series held as a panel (timestamps in nanoseconds, as a regular grid's are)."""
    digest = hashlib.sha256()
    update_data_hash(digest, ids, freqs, lengths, stamps, values)
    return "sha256:" + digest.hexdigest()


def update_data_hash(digest, ids, freqs, lengths: np.ndarray, stamps: np.ndarray, values: np.ndarray) -> None:
    """Feed series held as a panel to a SHA-256 ``digest``, as :func:`data_hash` does: a panel hashed in
    consecutive pieces (of whole series, in id order) hashes as the whole panel."""
    stop = 0
    nanoseconds = np.ascontiguousarray(stamps.astype("datetime64[ns]").view(np.int64))
    values = np.ascontiguousarray(values, dtype=np.float64)
    for sid, freq, length in zip(ids, freqs, np.asarray(lengths).tolist(), strict=True):
        start, stop = stop, stop + length
        digest.update(f"{sid}\0{freq}\0".encode())
        digest.update(nanoseconds[start:stop].tobytes())
        digest.update(values[start:stop].tobytes())


def panel_from_series(series: list[Series]) -> Panel:
    """Validated series (in series id order) as one panel."""
    lengths = np.array([len(s.values) for s in series], dtype=np.int64)
    stamps = np.concatenate([s.timestamps.to_numpy(dtype="datetime64[ns]") for s in series]) if series \
        else np.empty(0, dtype="datetime64[ns]")
    values = np.concatenate([np.asarray(s.values, dtype=np.float64) for s in series]) if series else np.empty(0)
    return Panel(np.array([s.series_id for s in series], dtype=object), np.array([s.freq for s in series],
                 dtype=object), lengths, stamps, values, data_hash(series))


def ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The positions ``starts[i] .. starts[i] + lengths[i] - 1``, one range after another."""
    before = np.cumsum(lengths) - lengths
    return np.repeat(starts - before, lengths) + np.arange(int(lengths.sum()))


DAY_NS = 86_400 * 10**9
WEEK_NS = 7 * DAY_NS
# a fixed step shorter than a month never lines up with month, quarter or year starts, so pandas names it by its
# length alone (and, for whole weeks, the weekday)
FIXED_STEP_BELOW_NS = 28 * DAY_NS


def regular_panel(frame: pd.DataFrame, params: IngestParams, min_length: int, first_timestamp=None) -> Panel:
    """Parse and validate every series of a long frame, each on its grid (as :func:`validate_series`), as a panel.

    A series already on a regular grid without gaps or missing values (a fixed step shorter than four weeks, or
    month starts every ``m`` months) is taken as it is, for all such series at once: pandas infers the frequency of
    one series per kind of grid. Any other series goes through :func:`regular_series`, which refuses it or puts
    it on its grid; the problems are reported together, series by series. ``first_timestamp``: see
    :func:`seqcast.data.checks.parse_rows`.
    """
    parsed = parse_rows(frame, first_timestamp)
    code = parsed["code"].to_numpy()  # sorted by series and time
    stamps = parsed["timestamp"].to_numpy()
    values = parsed["value"].to_numpy(dtype=np.float64)
    names = parsed["series_id"].cat.categories.to_numpy(dtype=object)
    n_rows = len(code)
    starts = np.flatnonzero(np.r_[True, code[1:] != code[:-1]]) if n_rows else np.empty(0, dtype=np.int64)
    counts = np.diff(np.r_[starts, n_rows])
    ids = names[code[starts]]

    fast = _on_grid(stamps, values, starts, counts, min_length)
    freqs = np.empty(len(starts), dtype=object)
    kinds = {}
    for i in np.flatnonzero(fast):
        kinds.setdefault(fast[i], i)
    for kind, i in kinds.items():
        one = slice(starts[i], starts[i] + counts[i])
        freq, _ = series_grid(ids[i], pd.DatetimeIndex(stamps[one]), np.arange(counts[i]), None)
        same = fast == kind
        if params.freq is not None and freq != params.freq:
            fast[same] = None  # a declared frequency of another name: the series is checked against it alone
        else:
            freqs[same] = freq
    slow = np.flatnonzero(fast == None)  # noqa: E711 (an object array: compare elementwise)

    found: dict[int, Series] = {}
    problems, keys = [], []
    for i in slow:
        try:
            found[i] = regular_series(str(ids[i]), parsed.iloc[starts[i]:starts[i] + counts[i]], params, min_length)
        except IngestError as exc:
            problems.append(str(exc))
            keys.append(str(ids[i]))
    fail(problems, keys, CHECK_SERIES)

    lengths = counts.copy()
    for i, s in found.items():
        lengths[i] = len(s.values)
    offsets = np.cumsum(lengths) - lengths
    taken = np.flatnonzero(fast != None)  # noqa: E711
    out_stamps = np.empty(int(lengths.sum()), dtype="datetime64[ns]")
    out_values = np.empty(int(lengths.sum()), dtype=np.float64)
    where = ranges(offsets[taken], counts[taken])
    source = ranges(starts[taken], counts[taken])
    out_stamps[where] = stamps[source].astype("datetime64[ns]")
    out_values[where] = values[source]
    for i, s in found.items():
        out_stamps[offsets[i]:offsets[i] + lengths[i]] = s.timestamps.to_numpy(dtype="datetime64[ns]")
        out_values[offsets[i]:offsets[i] + lengths[i]] = s.values
        freqs[i] = s.freq
    ids = np.array([str(sid) for sid in ids], dtype=object)
    return Panel(ids, freqs, lengths, out_stamps, out_values)


def _on_grid(stamps: np.ndarray, values: np.ndarray, starts: np.ndarray, counts: np.ndarray,
             min_length: int) -> np.ndarray:
    """Each series' kind of regular grid when it lies on one whole, without gaps and missing values; else None.

    (n_series,) objects: ``"step <nanoseconds> <weekday, or -1>"`` or ``"months <m> <first month, or 0>"``,
    which name the frequency pandas infers. Timestamps must convert to nanoseconds, as a regular grid's do.
    """
    kinds = np.full(len(starts), None, dtype=object)
    if not len(starts):
        return kinds
    try:
        ns = stamps.astype("datetime64[ns]") if stamps.dtype != np.dtype("datetime64[ns]") else stamps
    except (OverflowError, ValueError):
        return kinds
    if stamps.dtype != ns.dtype and not np.array_equal(ns.astype(stamps.dtype), stamps):
        return kinds  # beyond the nanosecond range: pandas decides series by series
    at = ns.view(np.int64)
    stops = starts + counts
    whole = (counts >= max(3, min_length)) & (
        segment_reduce(np.add, np.isnan(values).astype(np.float64), starts, stops, 0.0) == 0)
    # steps between consecutive rows of a series: the series' rows but its first
    step = np.r_[0, np.diff(at)]
    low = segment_reduce(np.fmin, step.astype(np.float64), starts + 1, stops, np.nan)
    high = segment_reduce(np.fmax, step.astype(np.float64), starts + 1, stops, np.nan)
    first = at[starts]
    fixed = whole & (low == high) & (low > 0) & (low < FIXED_STEP_BELOW_NS)
    weekday = ((first // DAY_NS) + 3) % 7  # 1970-01-01 was a Thursday (3, counting Monday as 0)
    for i in np.flatnonzero(fixed):
        length = int(low[i])
        kinds[i] = f"step {length} {int(weekday[i]) if length % WEEK_NS == 0 else -1}"
    months = ns.astype("datetime64[M]")
    month_start = (months.astype("datetime64[ns]") == ns).astype(np.float64)
    month = months.view(np.int64)
    month_step = np.r_[0, np.diff(month)].astype(np.float64)
    starts_all = segment_reduce(np.fmin, month_start, starts, stops, 0.0) == 1
    m_low = segment_reduce(np.fmin, month_step, starts + 1, stops, np.nan)
    m_high = segment_reduce(np.fmax, month_step, starts + 1, stops, np.nan)
    monthly = whole & ~fixed & starts_all & (m_low == m_high) & (m_low >= 1)
    for i in np.flatnonzero(monthly):
        m = int(m_low[i])
        kinds[i] = f"months {m} {int(month[starts[i]] % 12) if m > 1 else 0}"
    return kinds


def segment_reduce(ufunc: np.ufunc, x: np.ndarray, starts: np.ndarray, stops: np.ndarray, empty: float
                   ) -> np.ndarray:
    """``ufunc.reduce`` of each segment ``x[starts[i]:stops[i]]``; ``empty`` for an empty segment."""
    found = np.full(len(starts), empty, dtype=np.float64)
    some = stops > starts
    if some.any() and len(x):
        # reduceat reduces from each index to the next: the segments' own starts and stops, interleaved
        bounds = np.stack([starts[some], stops[some]], axis=1).reshape(-1)
        padded = np.r_[x, empty]  # a stop at the very end indexes one past the data
        found[some] = ufunc.reduceat(padded, bounds)[::2]
    return found

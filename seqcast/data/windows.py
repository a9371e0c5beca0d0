"""Windows cut on demand from series stored whole: one values array plus each series' offset and part boundaries.

A dataset stores every series' values once, one series after another (the layout statsforecast uses: one array and
the boundaries of each series), instead of every step repeated in up to ``n_steps + horizon`` windows. A window is
``n_steps`` inputs followed by ``horizon`` targets; the windows of a part are those whose targets all lie inside the
part, their inputs reaching back before it (the history known when the part's first target is forecast). A window
that spans a missing value (NaN, left by ``missing='drop'``) is no window.
"""

from __future__ import annotations

import numpy as np

PARTS = ("train", "valid", "test")


def part_bounds(lengths: np.ndarray, valid_start: np.ndarray, test_start: np.ndarray, part: str
                ) -> tuple[np.ndarray, np.ndarray]:
    """Each series' [start, stop) steps of ``part`` (arrays of shape (n_series,))."""
    if part == "train":
        return np.zeros_like(lengths), valid_start
    if part == "valid":
        return valid_start, test_start
    if part == "test":
        return test_start, lengths
    raise ValueError(f"unknown part {part!r}; parts: {', '.join(PARTS)}")


def window_starts(values: np.ndarray, offsets: np.ndarray, start: np.ndarray, stop: np.ndarray, n_steps: int,
                  horizon: int) -> tuple[np.ndarray, np.ndarray]:
    """Where every complete window of a part starts in ``values``, series by series; and each window's series row.

    ``values``: (n_values,) every series one after another; ``offsets``: (n_series,) where each series starts in
    it; ``start``, ``stop``: (n_series,) the part's steps in each series. Returns (n_windows,) positions in
    ``values`` and (n_windows,) series rows, in series order and, within a series, in time order.
    """
    width = n_steps + horizon
    offsets, start, stop = (np.asarray(a, dtype=np.int64) for a in (offsets, start, stop))
    first = np.maximum(0, start - n_steps)
    counts = np.maximum(0, stop - first - width + 1)
    rows = np.repeat(np.arange(len(counts)), counts)
    # within a series the starts count up from its first: position minus the series' first window's index
    before = np.cumsum(counts) - counts
    starts = offsets[rows] + first[rows] + (np.arange(len(rows)) - before[rows])
    if len(starts) and np.isnan(values).any():
        missing = np.r_[0, np.cumsum(np.isnan(values), dtype=np.int64)]
        whole = missing[starts + width] == missing[starts]
        starts, rows = starts[whole], rows[whole]
    return starts, rows


def cut(values: np.ndarray, starts: np.ndarray, width: int) -> np.ndarray:
    """The (n_windows, width) float32 windows starting at ``starts`` in ``values``."""
    if len(values) < width or len(starts) == 0:
        return np.empty((0, width), dtype=np.float32)
    view = np.lib.stride_tricks.sliding_window_view(np.asarray(values), width)
    return view[starts].astype(np.float32)


def window_counts(values: np.ndarray, offsets: np.ndarray, start: np.ndarray, stop: np.ndarray, n_steps: int,
                  horizon: int) -> np.ndarray:
    """How many complete windows each series' part holds: (n_series,) counts."""
    _, rows = window_starts(values, offsets, start, stop, n_steps, horizon)
    return np.bincount(rows, minlength=len(offsets))

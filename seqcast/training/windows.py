"""Training windows drawn per batch from a panel of series, never all cut at once.

A panel is every series' values end to end in one float32 array, with each series' start offset and length (the
layout statsforecast keeps internally). A window is ``n_steps`` inputs and the ``horizon`` targets after them, cut
from one series. Instead of materialising every window (memory that grows with the number of series, and again
in every scaling and normalisation copy), :class:`WindowSampler` draws each batch from the panel: a window chosen
uniformly among every allowed window of every series (so a series weighs as many windows as it holds), sliced,
scaled and handed to the caller's ``pairs`` function, which takes it into the model's frame. Each batch is a pure
function of the seed, the epoch and the batch index, so a run is reproducible and a resumed fit draws the very
batches it would have drawn without the crash. A fixed number of batches per epoch and a fixed validation sample
(:func:`fixed_sample`) keep an epoch's memory and time independent of the number of series.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

# A validation sample this large scores a model as steadily as every window does, and its cost stays flat as a
# panel grows; a panel with fewer validation windows is scored on all of them.
VALID_SAMPLE = 8192


@dataclass(frozen=True)
class Panel:
    """Series end to end: ``values`` (total,) float32, ``starts`` and ``lengths`` (n_series,) int64 offsets into it.

    ``train_ends`` and ``valid_ends`` (n_series,): the steps of each series before its validation part and before
    its test part; ``mean`` and ``std`` (n_series,) float64: the per-series scaling that takes values into the units
    the model sees (``(value - mean) / std``, as :class:`seqcast.data.scaling.Scaler` does).
    """

    values: np.ndarray
    starts: np.ndarray
    lengths: np.ndarray
    train_ends: np.ndarray
    valid_ends: np.ndarray
    mean: np.ndarray
    std: np.ndarray

    @property
    def n_series(self) -> int:
        return len(self.starts)


@dataclass(frozen=True)
class WindowRanges:
    """Where each series' allowed windows start: ``first`` (n_series,) and ``counts`` (n_series,) windows from it.

    ``cumulative`` (n_series,): windows of this series and every one before it, to find a window's series.
    """

    first: np.ndarray
    counts: np.ndarray
    cumulative: np.ndarray

    @property
    def total(self) -> int:
        return int(self.cumulative[-1]) if len(self.cumulative) else 0


def window_ranges(ends: np.ndarray, n_steps: int, horizon: int, first_target: np.ndarray | int | None = None,
                  last_windows: int | None = None) -> WindowRanges:
    """The windows of each series whose inputs start at step 0 or later and whose targets lie in [first_target, end).

    ``ends`` (n_series,): the step each series' windows must end before (its validation start, for training);
    ``first_target``: the earliest step a target may be (default: ``n_steps``, any window); inputs may reach back
    before it, as a part's windows do. ``last_windows``: only the last that many windows of each series (N-BEATS
    draws its training windows from the last few horizons of each series); default: every window.
    """
    ends = np.asarray(ends, dtype=np.int64)
    width = n_steps + horizon
    targets = np.full(len(ends), n_steps) if first_target is None else np.asarray(first_target, dtype=np.int64)
    first = np.maximum(0, targets - n_steps) + np.zeros(len(ends), dtype=np.int64)
    last = ends - width
    if last_windows is not None:
        first = np.maximum(first, last - last_windows + 1)
    counts = np.maximum(0, last - first + 1)
    return WindowRanges(first, counts, np.cumsum(counts))


def cut_windows(panel: Panel, ranges: WindowRanges, picks: np.ndarray, width: int
                ) -> tuple[np.ndarray, np.ndarray]:
    """The windows of global indices ``picks`` (each in [0, ranges.total)): (n, width) float32 in the model's units,
    and each window's series (n,) int64.

    Only arrays of ``len(picks)`` windows are built: a window's series is found by bisecting the cumulative
    counts, its values gathered straight from the panel.
    """
    series = np.searchsorted(ranges.cumulative, picks, side="right")
    offset = picks - (ranges.cumulative[series] - ranges.counts[series])
    begin = panel.starts[series] + ranges.first[series] + offset
    raw = panel.values[begin[:, np.newaxis] + np.arange(width)]
    # the scaler's arithmetic (float64, then float32), so a window is the one the eager path would scale
    mean, std = panel.mean[series, np.newaxis], panel.std[series, np.newaxis]
    return ((raw.astype(np.float64) - mean) / std).astype(np.float32), series


Pairs = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


class WindowSampler:
    """Batches of training pairs drawn from a panel: ``batch(epoch, index)`` -> ``pairs(windows)``.

    ``pairs`` takes (batch_size, n_steps + horizon) windows in the model's units to the inputs and targets the
    model fits (window normalisation included). Windows are drawn with replacement, uniformly among the allowed
    windows of ``ranges``; the draw depends on ``seed``, ``epoch`` and ``index`` only.
    """

    def __init__(self, panel: Panel, ranges: WindowRanges, width: int, pairs: Pairs, batch_size: int,
                 steps_per_epoch: int, seed: int):
        if ranges.total == 0:
            raise ValueError(f"no series holds a complete training window of {width} steps")
        self.panel, self.ranges, self.width, self.pairs = panel, ranges, width, pairs
        self.batch_size, self.steps_per_epoch, self.seed = batch_size, steps_per_epoch, seed

    def picks(self, epoch: int, index: int) -> np.ndarray:
        """The global window indices of one batch, (batch_size,) int64."""
        rng = np.random.default_rng([self.seed, epoch, index])
        return rng.integers(0, self.ranges.total, size=self.batch_size)

    def batch(self, epoch: int, index: int) -> tuple[np.ndarray, np.ndarray]:
        windows, _ = cut_windows(self.panel, self.ranges, self.picks(epoch, index), self.width)
        return self.pairs(windows)


def fixed_sample(panel: Panel, ranges: WindowRanges, width: int, seed: int, size: int = VALID_SAMPLE
                 ) -> np.ndarray:
    """Windows drawn once, (min(size, ranges.total), width) float32 in the model's units: every window when there
    are at most ``size``, in panel order, else ``size`` of them without replacement, in panel order."""
    if ranges.total <= size:
        picks = np.arange(ranges.total)
    else:
        picks = np.sort(np.random.default_rng([seed, 1]).choice(ranges.total, size=size, replace=False))
    windows, _ = cut_windows(panel, ranges, picks, width)
    return windows


def keras_dataset(sampler: WindowSampler):
    """A ``keras.utils.PyDataset`` of ``sampler.steps_per_epoch`` batches, and the Keras callback that tells it the
    epoch: put the callback in the fit's callbacks, so a fit resumed at epoch k draws epoch k's batches."""
    import keras

    class _Batches(keras.utils.PyDataset):
        epoch = 0

        def __len__(self):
            return sampler.steps_per_epoch

        def __getitem__(self, index):
            return sampler.batch(self.epoch, index)

    batches = _Batches()

    class _Epoch(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            batches.epoch = epoch

    return batches, _Epoch()


def empty_panel(lengths: np.ndarray, train_ends: np.ndarray, valid_ends: np.ndarray, mean: np.ndarray,
                std: np.ndarray) -> Panel:
    """A panel of series of ``lengths`` (n_series,) whose values :func:`fill_series` puts in place, part by part.

    ``train_ends`` and ``valid_ends`` as :class:`Panel`'s; series lie in the order given, whatever order their
    values arrive in, so a panel filled from shards is the same panel for any number of shards.
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    train_ends, valid_ends = np.asarray(train_ends, dtype=np.int64), np.asarray(valid_ends, dtype=np.int64)
    misfits = np.flatnonzero(~((0 <= train_ends) & (train_ends <= valid_ends) & (valid_ends <= lengths)))
    if len(misfits):
        bad = int(misfits[0])
        raise ValueError(f"series {bad} of the panel has parts that do not fit its {lengths[bad]} steps "
                         f"(training ends at {train_ends[bad]}, validation at {valid_ends[bad]})")
    return Panel(np.empty(int(lengths.sum()), dtype=np.float32), np.cumsum(lengths) - lengths, lengths, train_ends,
                 valid_ends, np.asarray(mean, dtype=np.float64), np.asarray(std, dtype=np.float64))


def fill_series(panel: Panel, series: np.ndarray, values: np.ndarray) -> None:
    """Put the steps of ``series`` (k,) panel series numbers into ``panel.values``: ``values`` holds theirs end to
    end, in the order of ``series``, as a shard stores its series."""
    series = np.asarray(series, dtype=np.int64)
    lengths = panel.lengths[series]
    if int(lengths.sum()) != len(values):
        raise ValueError(f"{len(values)} values for {len(series)} series of {int(lengths.sum())} steps in all")
    # each step's place: its series' start in the panel plus its position within its series
    before = np.cumsum(lengths) - lengths
    panel.values[np.repeat(panel.starts[series] - before, lengths) + np.arange(len(values))] = values


def series_panel(values: np.ndarray, series: np.ndarray, in_train: np.ndarray, in_valid: np.ndarray,
                 mean: np.ndarray, std: np.ndarray) -> Panel:
    """A panel from every step of every series in order: ``values`` (total,), each step's series number ``series``
    (total,), 0 to n_series - 1, each series' steps together and in order), and whether each step is in the
    training part (``in_train``) or the validation part (``in_valid``), parts in the order train, valid, test."""
    series = np.asarray(series)
    if len(series) and np.any(np.diff(series) < 0):
        raise ValueError("the steps of each series must lie together, series after series, to form a panel")
    n_series = len(mean)
    lengths = np.bincount(series, minlength=n_series).astype(np.int64)
    train_ends = np.bincount(series, weights=in_train, minlength=n_series).astype(np.int64)
    valid_ends = train_ends + np.bincount(series, weights=in_valid, minlength=n_series).astype(np.int64)
    return Panel(np.asarray(values, dtype=np.float32), np.cumsum(lengths) - lengths, lengths, train_ends, valid_ends,
                 np.asarray(mean, dtype=np.float64), np.asarray(std, dtype=np.float64))

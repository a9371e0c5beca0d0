"""Statistical baselines: naive, seasonal naive, Naive2, Theta and ETS, one forecast per training part.

``theta`` and ``ets`` are statsforecast's ``Theta`` and ``AutoETS`` with the season length set to the period;
the other three follow the M4 benchmark code (see ``seqcast.evaluation.baselines``). Every method takes a list of 1-D
training parts (their lengths may differ) and returns forecasts of shape (n_series, h).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from seqcast.evaluation.baselines import naive2

Progress = Callable[[int, int], None]  # called with (series done, series in all) as fits finish


def _flat(train: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Every training part in one float64 array, and each part's end in it: ((n_values,), (n_series,))."""
    lengths = np.fromiter(map(len, train), dtype=np.int64, count=len(train))
    values = np.concatenate([np.asarray(x, dtype=np.float64) for x in train]) if len(train) else np.empty(0)
    return values, np.cumsum(lengths)


def naive(train: Sequence[np.ndarray], period: int, h: int) -> np.ndarray:
    """The last value of every series, repeated: (n_series, h). ``period`` is unused."""
    values, ends = _flat(train)
    if len(train) and np.any(np.diff(np.r_[0, ends]) == 0):
        raise ValueError("an empty training part has no last value: no naive forecast")
    return np.repeat(values[ends - 1][:, None], h, axis=1)


def seasonal_naive(train: Sequence[np.ndarray], period: int, h: int) -> np.ndarray:
    """The last ``period`` values of every series, repeated: (n_series, h); the naive forecast for period 1."""
    lag = max(int(period), 1)
    values, ends = _flat(train)
    short = np.flatnonzero(np.diff(np.r_[0, ends]) < lag)
    if len(short):
        raise ValueError(f"series {short[:10].tolist()} are shorter than one period ({lag}): no seasonal naive "
                         f"forecast")
    last_period = values[ends[:, None] - lag + np.arange(lag)]  # (n_series, lag)
    return last_period[:, np.arange(h) % lag].reshape(len(train), h)


# Below this many series a process pool costs more to start than it saves.
PARALLEL_MIN_SERIES = 500
# Series per task of the process pool: small enough that progress is reported often and the cores stay evenly busy
# to the end, large enough that each task's StatsForecast call costs little beside its fits.
CHUNK_SERIES = 1000


def _cores() -> int:
    """The cores this process may fit on: its CPU affinity, or one in a daemonic process (a Dask worker's), which
    may not start processes of its own."""
    import multiprocessing

    if multiprocessing.current_process().daemon:
        return 1
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _fallback() -> object:
    """The model that forecasts a series whose own model fails to fit (e.g. too short for Theta): the last value,
    which every series with one value has."""
    from statsforecast.models import Naive

    return Naive()


def _forecast_chunk(model: object, values: np.ndarray, lengths: np.ndarray, h: int) -> np.ndarray:
    """One ``StatsForecast`` call on consecutive training parts (their values end to end, and their lengths), one
    process, the fallback model for a failed fit: (n_series, h)."""
    from statsforecast import StatsForecast

    frame = pd.DataFrame({"unique_id": np.repeat(np.arange(len(lengths)), lengths),
                          "ds": np.arange(len(values)) - np.repeat(np.cumsum(lengths) - lengths, lengths),
                          "y": values})
    found = StatsForecast(models=[model], freq=1, n_jobs=1, fallback_model=_fallback()).forecast(df=frame, h=h)
    found = found.sort_values(["unique_id", "ds"], kind="stable")
    return found[str(model)].to_numpy(dtype=np.float64).reshape(len(lengths), h)


def _statsforecast(model: object, train: Sequence[np.ndarray], h: int, progress: Progress | None = None
                   ) -> np.ndarray:
    """Forecast every training part with ``model`` through ``StatsForecast`` (integer time steps, the fallback model
    where a fit fails), in chunks of series on this process's cores when there are enough of them; (n_series, h).

    ``progress`` gets (series done, series in all) after each chunk.
    """
    values, ends = _flat(train)
    lengths = np.diff(np.r_[0, ends])
    n = len(train)
    n_jobs = _cores() if n >= PARALLEL_MIN_SERIES else 1
    bounds = np.r_[np.arange(0, n, CHUNK_SERIES), n]
    chunks = [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])]
    forecasts = np.empty((n, h))

    def part(a: int, b: int) -> tuple[np.ndarray, np.ndarray]:
        return values[ends[a] - lengths[a]:ends[b - 1]], lengths[a:b]

    done = 0
    if n_jobs == 1:
        for a, b in chunks:
            forecasts[a:b] = _forecast_chunk(model, *part(a, b), h)
            done += b - a
            if progress:
                progress(done, n)
        return forecasts
    from concurrent.futures import as_completed
    from concurrent.futures.process import BrokenProcessPool

    pool = _pool(n_jobs)  # as StatsForecast(n_jobs) runs its own chunks
    running = {pool.submit(_forecast_chunk, model, *part(a, b), h): (a, b) for a, b in chunks}
    try:
        for future in as_completed(running):
            a, b = running[future]
            forecasts[a:b] = future.result()
            done += b - a
            if progress:
                progress(done, n)
    except BrokenProcessPool:
        _POOLS.pop((os.getpid(), n_jobs), None)  # a lost worker breaks the pool for good: the next call starts one
        raise
    return forecasts


_POOLS: dict[tuple[int, int], object] = {}  # by the owning process too: a forked child must not use its parent's


def _pool(n_jobs: int):
    """This process's pool of ``n_jobs`` fitting processes, started once: the shards of a run (and the runs of a
    process) reuse its workers, which have imported statsforecast and compiled its models already."""
    key = (os.getpid(), n_jobs)
    if key not in _POOLS:
        import atexit
        from concurrent.futures import ProcessPoolExecutor

        _POOLS[key] = pool = ProcessPoolExecutor(n_jobs)
        atexit.register(pool.shutdown, cancel_futures=True)
    return _POOLS[key]


def _theta_model(period: int) -> object:
    from statsforecast.models import Theta

    return Theta(season_length=max(int(period), 1))


def _ets_model(period: int) -> object:
    from statsforecast.models import AutoETS

    return AutoETS(season_length=max(int(period), 1))


def theta(train: Sequence[np.ndarray], period: int, h: int) -> np.ndarray:
    """statsforecast's standard Theta method (multiplicative deseasonalisation when seasonal): (n_series, h)."""
    return _statsforecast(_theta_model(period), train, h)


def ets(train: Sequence[np.ndarray], period: int, h: int) -> np.ndarray:
    """statsforecast's AutoETS (model chosen by AICc among error, trend and season types): (n_series, h)."""
    return _statsforecast(_ets_model(period), train, h)


def ets_intervals(train: Sequence[np.ndarray], period: int, h: int, levels: Sequence[float]
                  ) -> tuple[np.ndarray, dict[float, tuple[np.ndarray, np.ndarray]]]:
    """statsforecast's AutoETS with its own prediction intervals (from the fitted model's error variance): the
    forecasts (n_series, h) and, per level (percent), the lower and upper bounds, each (n_series, h)."""
    from statsforecast.models import AutoETS

    # statsforecast names a bound after the level as given ("lo-80" for 80, "lo-80.0" for 80.0)
    asked = [int(level) if float(level).is_integer() else float(level) for level in levels]
    levels = [float(level) for level in asked]
    mean = np.empty((len(train), h))
    bands = {level: (np.empty((len(train), h)), np.empty((len(train), h))) for level in levels}
    for i, x in enumerate(train):
        found = AutoETS(season_length=max(int(period), 1)).forecast(y=np.asarray(x, dtype=np.float64), h=h,
                                                                    level=asked)
        mean[i] = found["mean"]
        for level, key in zip(levels, asked):
            bands[level][0][i], bands[level][1][i] = found[f"lo-{key}"], found[f"hi-{key}"]
    return mean, bands


METHODS: dict[str, Callable[[Sequence[np.ndarray], int, int], np.ndarray]] = {
    "naive": naive,
    "seasonal_naive": seasonal_naive,
    "naive2": naive2,
    "theta": theta,
    "ets": ets,
}


# the methods fitted through StatsForecast (process pool, fallback model, progress), by the model for a period
FITTED: dict[str, Callable[[int], object]] = {"theta": _theta_model, "ets": _ets_model}


def forecast_stats(method: str, train: Sequence[np.ndarray], period: int, h: int, progress: Progress | None = None
                   ) -> np.ndarray:
    """Forecast every training part with the named method: (n_series, h) float64.

    ``progress`` gets (series done, series in all) as the fits finish. Raises ValueError for an unknown method,
    listing the valid names.
    """
    return forecast_stats_groups(method, [train], period, h, progress)[0]


def forecast_stats_groups(method: str, groups: Sequence[Sequence[np.ndarray]], period: int, h: int,
                          progress: Progress | None = None) -> list[np.ndarray]:
    """Forecast several groups of training parts (e.g. every series before each of several cutoffs) with the named
    method in one pass, one process pool for all of them: one (n_series of the group, h) float64 array per group.

    ``progress`` gets (series done, series in all groups) as the fits finish.
    """
    if method not in METHODS:
        raise ValueError(f"unknown statistical method {method!r}; valid: {', '.join(METHODS)}")
    if h < 1:
        raise ValueError(f"horizon must be at least 1, got {h}")
    every = [x for group in groups for x in group]
    if not every:
        found = np.empty((0, h))
    elif method in FITTED:
        found = _statsforecast(FITTED[method](period), every, h, progress)
    else:
        found = np.asarray(METHODS[method](every, period, h), dtype=np.float64)
        if progress:
            progress(len(every), len(every))
    bounds = np.cumsum([0, *map(len, groups)])
    return [found[a:b] for a, b in zip(bounds[:-1], bounds[1:])]

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


def _last_values(train: Sequence[np.ndarray]) -> np.ndarray:
    return np.array([np.asarray(x, dtype=np.float64)[-1] for x in train])


def naive(train: Sequence[np.ndarray], period: int, h: int) -> np.ndarray:
    """The last value of every series, repeated: (n_series, h). ``period`` is unused."""
    return np.repeat(_last_values(train)[:, None], h, axis=1)


def seasonal_naive(train: Sequence[np.ndarray], period: int, h: int) -> np.ndarray:
    """The last ``period`` values of every series, repeated: (n_series, h); the naive forecast for period 1."""
    lag = max(int(period), 1)
    short = [i for i, x in enumerate(train) if len(x) < lag]
    if short:
        raise ValueError(f"series {short[:10]} are shorter than one period ({lag}): no seasonal naive forecast")
    return np.stack([np.resize(np.asarray(x, dtype=np.float64)[-lag:], h) for x in train]).reshape(len(train), h)


# Below this many series a process pool costs more to start than it saves.
PARALLEL_MIN_SERIES = 500


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _statsforecast(model: object, train: Sequence[np.ndarray], h: int) -> np.ndarray:
    """Forecast every training part with ``model`` through ``StatsForecast``: all parts in one long frame (integer
    time steps), fitted in parallel on this process's cores when there are enough of them; (n_series, h)."""
    from statsforecast import StatsForecast

    lengths = np.array([len(x) for x in train])
    frame = pd.DataFrame({"unique_id": np.repeat(np.arange(len(train)), lengths),
                          "ds": np.concatenate([np.arange(n) for n in lengths]),
                          "y": np.concatenate([np.asarray(x, dtype=np.float64) for x in train])})
    n_jobs = _cores() if len(train) >= PARALLEL_MIN_SERIES else 1
    found = StatsForecast(models=[model], freq=1, n_jobs=n_jobs).forecast(df=frame, h=h)
    found = found.sort_values(["unique_id", "ds"], kind="stable")
    return found[str(model)].to_numpy(dtype=np.float64).reshape(len(train), h)


def theta(train: Sequence[np.ndarray], period: int, h: int) -> np.ndarray:
    """statsforecast's standard Theta method (multiplicative deseasonalisation when seasonal): (n_series, h)."""
    from statsforecast.models import Theta

    return _statsforecast(Theta(season_length=max(int(period), 1)), train, h)


def ets(train: Sequence[np.ndarray], period: int, h: int) -> np.ndarray:
    """statsforecast's AutoETS (model chosen by AICc among error, trend and season types): (n_series, h)."""
    from statsforecast.models import AutoETS

    return _statsforecast(AutoETS(season_length=max(int(period), 1)), train, h)


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


def forecast_stats(method: str, train: Sequence[np.ndarray], period: int, h: int) -> np.ndarray:
    """Forecast every training part with the named method: (n_series, h) float64.

    Raises ValueError for an unknown method, listing the valid names.
    """
    if method not in METHODS:
        raise ValueError(f"unknown statistical method {method!r}; valid: {', '.join(METHODS)}")
    if h < 1:
        raise ValueError(f"horizon must be at least 1, got {h}")
    if len(train) == 0:
        return np.empty((0, h))
    return np.asarray(METHODS[method](train, period, h), dtype=np.float64)

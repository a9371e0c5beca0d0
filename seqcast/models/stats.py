"""Statistical baselines: naive, seasonal naive, Naive2, Theta and ETS, one forecast per training part.

``theta`` and ``ets`` are statsforecast's ``Theta`` and ``AutoETS`` with the season length set to the period;
the other three follow the M4 benchmark code (see ``seqcast.evaluation.baselines``). Every method takes a list of 1-D
training parts (their lengths may differ) and returns forecasts of shape (n_series, h).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

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


def _statsforecast(make_model: Callable[[int], object], train: Sequence[np.ndarray], period: int,
                   h: int) -> np.ndarray:
    # one model object per series: statsforecast models keep fitted state on the instance
    forecasts = np.empty((len(train), h))
    for i, x in enumerate(train):
        forecasts[i] = make_model(max(int(period), 1)).forecast(y=np.asarray(x, dtype=np.float64), h=h)["mean"]
    return forecasts


def theta(train: Sequence[np.ndarray], period: int, h: int) -> np.ndarray:
    """statsforecast's standard Theta method (multiplicative deseasonalisation when seasonal): (n_series, h)."""
    from statsforecast.models import Theta

    return _statsforecast(lambda m: Theta(season_length=m), train, period, h)


def ets(train: Sequence[np.ndarray], period: int, h: int) -> np.ndarray:
    """statsforecast's AutoETS (model chosen by AICc among error, trend and season types): (n_series, h)."""
    from statsforecast.models import AutoETS

    return _statsforecast(lambda m: AutoETS(season_length=m), train, period, h)


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

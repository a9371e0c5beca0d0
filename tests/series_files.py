"""Long-format files of a few daily series with a weekly pattern, a trend and noise, written by the tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd


def daily_series(n_series: int = 3, days: int = 120, seed: int = 0, start: str = "2024-01-01") -> pd.DataFrame:
    """Columns store, day (ISO text), sales: level 10 + 5 i, weekly sine of amplitude 3, trend, noise 0.5."""
    rng = np.random.default_rng(seed)
    frames = []
    for i in range(n_series):
        t = np.arange(days)
        sales = 10 + 5 * i + 3 * np.sin(2 * np.pi * t / 7 + i) + 0.02 * t + rng.normal(0, 0.5, days)
        frames.append(pd.DataFrame({"store": f"s{i:02d}", "day": pd.date_range(start, periods=days, freq="D")
                                    .strftime("%Y-%m-%d"), "sales": sales.round(3)}))
    return pd.concat(frames, ignore_index=True)


def write(frame: pd.DataFrame, path: Path) -> Path:
    """Write as CSV or Parquet by suffix; return the path."""
    if path.suffix == ".csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False)
    return path


COLUMNS = {"id_column": "store", "time_column": "day", "value_column": "sales"}


def trending_series(n_series: int = 20, days: int = 200, seed: int = 0, noise: float = 0.3) -> pd.DataFrame:
    """Columns store, day, sales: straight lines ``a + b t`` (levels 0..50, slopes 0.2..2) plus Gaussian noise.

    With the default fractions the test part lies well above every value of the training part, in the units of
    the per-series scaler too.
    """
    rng = np.random.default_rng(seed)
    t = np.arange(days)
    frames = []
    for i, (a, b) in enumerate(zip(rng.uniform(0, 50, n_series), np.linspace(0.2, 2.0, n_series))):
        sales = a + b * t + rng.normal(0, noise, days)
        frames.append(pd.DataFrame({"store": f"s{i:02d}", "day": pd.date_range("2024-01-01", periods=days, freq="D")
                                    .strftime("%Y-%m-%d"), "sales": sales.round(3)}))
    return pd.concat(frames, ignore_index=True)

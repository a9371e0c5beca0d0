"""Scaling of windows: statistics fit on the training part only, applied to inputs and inverted on outputs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

ScalingMode = Literal["none", "series", "global"]
GLOBAL_KEY = "*"


@dataclass(frozen=True)
class Scaler:
    """Standardisation ``(value - mean) / std`` per series (``series``), over all series (``global``) or not at all.

    ``stats`` maps a series id (or ``"*"`` for global) to ``(mean, std)`` in the original units.
    """

    mode: ScalingMode = "none"
    stats: dict[str, tuple[float, float]] = field(default_factory=dict)

    @property
    def is_identity(self) -> bool:
        return self.mode == "none"

    def _columns(self, series_ids) -> tuple[np.ndarray, np.ndarray]:
        """Return (n, 1) mean and std columns for ``n`` windows of the given series."""
        if self.mode == "global":
            mean, std = self.stats[GLOBAL_KEY]
            n = len(series_ids)
            return np.full((n, 1), mean), np.full((n, 1), std)
        # each distinct series is looked up once, so the cost follows the series, not the windows
        ids, inverse = np.unique(np.asarray(series_ids, dtype=str), return_inverse=True)
        missing = [s for s in ids if s not in self.stats]
        if missing:
            raise ValueError(f"no scaling statistics for series {', '.join(missing[:5])}: the model was "
                             f"trained with per-series scaling on other series")
        pairs = np.array([self.stats[s] for s in ids], dtype=np.float64).reshape(-1, 2)[inverse.reshape(-1)]
        return pairs[:, :1], pairs[:, 1:]

    def transform(self, values: np.ndarray, series_ids) -> np.ndarray:
        """Scale (n, width) values of the given series; identity returns the very same array (bit-for-bit)."""
        if self.is_identity:
            return values
        mean, std = self._columns(series_ids)
        return ((np.asarray(values, dtype=np.float64) - mean) / std).astype(np.float32)

    def inverse(self, values: np.ndarray, series_ids) -> np.ndarray:
        """Map (n, width) scaled values back to the original units."""
        if self.is_identity:
            return values
        mean, std = self._columns(series_ids)
        return (np.asarray(values, dtype=np.float64) * std + mean).astype(np.float32)

    def to_dict(self) -> dict:
        return {"mode": self.mode, "stats": {k: list(v) for k, v in self.stats.items()}}

    @classmethod
    def from_dict(cls, data: dict | None) -> Scaler:
        if not data:
            return cls()
        return cls(data["mode"], {k: (float(v[0]), float(v[1])) for k, v in data.get("stats", {}).items()})


def _mean_std(values: np.ndarray) -> tuple[float, float]:
    values = np.asarray(values, dtype=np.float64)
    values = values[~np.isnan(values)]
    std = float(values.std())
    # a constant training part has std 0: keep it unscaled rather than divide by zero
    return float(values.mean()), std if std > 0 else 1.0


def fit_scaler(mode: ScalingMode, training_values: dict[str, np.ndarray]) -> Scaler:
    """Fit on each series' training values only (series id -> 1-D array; NaN ignored)."""
    if mode == "none":
        return Scaler()
    if mode == "global":
        return Scaler("global", {GLOBAL_KEY: _mean_std(np.concatenate(list(training_values.values())))})
    if mode == "series":
        return Scaler("series", {str(k): _mean_std(v) for k, v in training_values.items()})
    raise ValueError(f"unknown scaling {mode!r}; scalings: none, series, global")


def moments(values: np.ndarray) -> tuple[int, float, float]:
    """Count, mean and sum of squared deviations of the known values (NaN ignored): a part of the panel's
    statistics that :func:`global_scaler` combines with the others."""
    values = np.asarray(values, dtype=np.float64)
    values = values[~np.isnan(values)]
    if not len(values):
        return 0, 0.0, 0.0
    mean = float(values.mean())
    return len(values), mean, float(((values - mean) ** 2).sum())


def global_scaler(parts: list[tuple[int, float, float]]) -> Scaler:
    """The global scaler of a panel whose parts have :func:`moments` ``parts``: as :func:`fit_scaler` ``("global",
    ...)`` on the whole panel, the parts' moments combined pairwise (Chan et al.), equal to within rounding."""
    count, mean, m2 = 0, float("nan"), 0.0
    for n, part_mean, part_m2 in parts:
        if n == 0:
            continue
        if count == 0:
            count, mean, m2 = n, part_mean, part_m2
            continue
        delta, total = part_mean - mean, count + n
        mean += delta * n / total
        m2 += part_m2 + delta * delta * count * n / total
        count = total
    std = float(np.sqrt(m2 / count)) if count else float("nan")
    return Scaler("global", {GLOBAL_KEY: (mean, std if std > 0 else 1.0)})

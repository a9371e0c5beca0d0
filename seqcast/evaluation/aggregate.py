"""Means of the per-step scores: per series, per step, per subset (OWA included) and per group of rows.

Every score is first computed per (series, step) by ``seqcast.evaluation.point``, ``scaled`` or ``interval``;
these means turn them into the figures that are stored and shown. A missing score (NaN: a series without a MASE
scale, a forecast without an interval) is left out of a mean, as SQL's ``avg`` leaves out NULL; a mean over nothing
is NaN, stored as NULL.

Every M3 and M4 series of a subset shares one horizon, so the mean over series of per-series means equals the mean
over all (series, step) scores; a subset's figure is that mean.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from seqcast.evaluation.point import smape_steps
from seqcast.evaluation.scaled import mase_scale, mase_steps, owa


def mean(values: np.ndarray, axis: int | None = None) -> np.ndarray | float:
    """The mean over ``axis`` of the values that are not NaN; NaN where there is none."""
    values = np.asarray(values, dtype=np.float64)
    known = ~np.isnan(values)
    counts = known.sum(axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        found = np.where(known, values, 0.0).sum(axis=axis) / np.where(counts == 0, np.nan, counts)
    return float(found) if np.ndim(found) == 0 else found


def per_series(steps: np.ndarray) -> np.ndarray:
    """(n_series, h) -> (n_series,): each series' mean over its steps (NaN for a series with a missing step)."""
    return np.asarray(steps, dtype=np.float64).mean(axis=1)


def per_step(steps: np.ndarray) -> np.ndarray:
    """(n_series, h) -> (h,): each step's mean over the series that have a score there."""
    return mean(steps, axis=0)


def or_none(value: float) -> float | None:
    """A figure as stored: None for NaN or an infinite value."""
    return float(value) if value is not None and np.isfinite(value) else None


def subset_scores(smape: np.ndarray, mase: np.ndarray, naive2_smape: np.ndarray, naive2_mase: np.ndarray) -> dict:
    """A subset's sMAPE, MASE, Naive2's two and OWA from per-series (or per-step) scores of the forecast and of
    Naive2 on the same series: each the mean of its known values; None where there is none."""
    means = {"smape": mean(smape), "mase": mean(mase), "naive2_smape": mean(naive2_smape),
             "naive2_mase": mean(naive2_mase)}
    means["owa"] = owa(means["smape"], means["mase"], means["naive2_smape"], means["naive2_mase"])
    return {name: or_none(value) for name, value in means.items()}


@dataclass(frozen=True)
class Scores:
    """sMAPE and MASE of one forecast of a subset, per (series, step); every view derives from these two."""

    smape_steps: np.ndarray  # (n_series, h)
    mase_steps: np.ndarray  # (n_series, h)

    @property
    def smape_per_series(self) -> np.ndarray:
        """(n_series,)"""
        return per_series(self.smape_steps)

    @property
    def mase_per_series(self) -> np.ndarray:
        """(n_series,)"""
        return per_series(self.mase_steps)

    @property
    def smape_per_step(self) -> np.ndarray:
        """(h,): the mean over series of each horizon step."""
        return per_step(self.smape_steps)

    @property
    def mase_per_step(self) -> np.ndarray:
        """(h,)"""
        return per_step(self.mase_steps)

    @property
    def smape(self) -> float:
        """The subset's sMAPE: mean over series of the per-series sMAPE."""
        return float(self.smape_per_series.mean())

    @property
    def mase(self) -> float:
        """The subset's MASE: mean over series of the per-series MASE."""
        return float(self.mase_per_series.mean())

    def owa(self, naive2: Scores) -> float:
        """OWA of these scores relative to Naive2's on the same series."""
        return owa(self.smape, self.mase, naive2.smape, naive2.mase)


def score(y: np.ndarray, yhat: np.ndarray, train: Sequence[np.ndarray], period: int) -> Scores:
    """sMAPE and MASE of forecasts ``yhat`` (n_series, h) of actuals ``y`` (n_series, h), every series scaled by
    its training part (ValueError where one has no scale)."""
    y = np.asarray(y, dtype=np.float64)
    if len(train) != len(y):
        raise ValueError(f"{len(train)} training parts for {len(y)} forecast rows")
    if y.ndim != 2:
        raise ValueError(f"expected (n_series, h) actuals, got shape {y.shape}")
    return Scores(smape_steps(y, yhat), mase_steps(y, yhat, mase_scale(train, period)))

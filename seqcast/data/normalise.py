"""Window-level normalisation: each input window is shifted by a reference of its own and divided by its own scale.

A per-series standardiser fits its statistics on the training part, so a trending series leaves that range later
on, and a network whose outputs are bounded (tanh) cannot follow it. Seen relative to its own window, a trend is
the same shape at every level. ``last`` takes the window's last value as the reference (the frame in which the
naive forecast is zero), ``mean`` the window's mean (RevIN's instance normalisation); both divide by the window's
standard deviation, floored at ``SCALE_FLOOR``, so that windows of different amplitude look alike. ``none`` leaves
every value as it is, bit for bit.

The normalisation works on what the model sees, after the dataset's own scaler; on the way back ``denormalise``
runs first and the dataset's scaler inverts after it. Every target of a window (a vector, or the per-step targets
of sequence and strided variants) is taken into the same frame, that of the whole input window, so the network
sees one consistent frame.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

WindowNorm = Literal["none", "last", "mean"]
WINDOW_NORMS: tuple[str, ...] = ("none", "last", "mean")
# In the units the model sees: after the per-series scaler, a tenth of the series' training standard deviation.
# A flat window is divided by this instead of zero, which keeps the targets after it (a jump after a run of equal
# values) within tens of units, so that one window cannot swamp the loss.
SCALE_FLOOR = 0.1


def normalise(x: np.ndarray, mode: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Take input windows into their own frame: ``x' = (x - ref) / scale``.

    ``x``: (n, steps, 1) or (n, steps). Returns ``x'`` (float32, the shape of ``x``; for ``none`` the very array
    given), and the reference and scale of each window, both (n, 1) float64: pass them to :func:`normalise_like`
    for the targets and to :func:`denormalise` for the outputs.
    """
    if mode not in WINDOW_NORMS:
        raise ValueError(f"unknown window_norm {mode!r}; window norms: {', '.join(WINDOW_NORMS)}")
    n = len(x)
    if mode == "none":
        return x, np.zeros((n, 1)), np.ones((n, 1))
    values = np.asarray(x, dtype=np.float64).reshape(n, -1)
    ref = values[:, -1:] if mode == "last" else values.mean(axis=1, keepdims=True)
    scale = np.maximum(values.std(axis=1, keepdims=True), SCALE_FLOOR)
    return normalise_like(x, ref, scale), ref, scale


def normalise_like(y: np.ndarray, ref: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Take values of the windows (targets (n, horizon) or (n, steps, horizon)) into the windows' frame.

    ``ref``, ``scale``: (n, 1), from :func:`normalise`. Returns float32 of the shape of ``y``.
    """
    ref, scale = _against(ref, y), _against(scale, y)
    return ((np.asarray(y, dtype=np.float64) - ref) / scale).astype(np.float32)


def denormalise(y: np.ndarray, ref: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Map values in the windows' frame ((n, horizon) or (n, steps, horizon)) back: ``y = y' * scale + ref``.

    ``ref``, ``scale``: (n, 1), from :func:`normalise`. Returns float32 of the shape of ``y``; with the reference 0
    and the scale 1 of ``none``, exactly ``y``.
    """
    ref, scale = _against(ref, y), _against(scale, y)
    return (np.asarray(y, dtype=np.float64) * scale + ref).astype(np.float32)


def _against(column: np.ndarray, y: np.ndarray) -> np.ndarray:
    """An (n, 1) column shaped to broadcast over every axis of ``y`` but the first."""
    return np.asarray(column, dtype=np.float64).reshape(len(column), *([1] * (np.ndim(y) - 1)))

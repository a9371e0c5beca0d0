"""The chapter's two plots for every run: learning curves and forecasts of three validation series.

Drawn with matplotlib's object API on the Agg canvas (no pyplot state, no GUI backend), with fixed margins:
automatic layout costs more than the rest of a baseline run. Each plot is returned as PNG bytes for the caller to
store.
"""

from __future__ import annotations

import io

import numpy as np


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=90)


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def plot_learning_curves(history: list[dict], title: str) -> bytes:
    """Plot loss and val_loss by epoch (log scale) as a PNG."""
    from matplotlib.ticker import MaxNLocator

    fig = _figure(6, 3.6)
    fig.subplots_adjust(left=0.13, right=0.97, top=0.9, bottom=0.14)
    ax = fig.add_subplot()
    epochs = [row["epoch"] for row in history]
    ax.plot(epochs, [row["loss"] for row in history], "b.-", label="training loss")
    ax.plot(epochs, [row["val_loss"] for row in history], "r.-", label="validation loss")
    ax.set_yscale("log")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("MSE")
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper right")
    return _png(fig)


def forecast_figure(x: np.ndarray, y_pred: np.ndarray, title: str, y_true: np.ndarray | None = None,
                    bands: dict[float, tuple[np.ndarray, np.ndarray]] | None = None, names: list[str] | None = None,
                    share_y: bool = True):
    """The forecasts of up to three series as a matplotlib Figure: inputs ``x`` (n, steps), forecasts ``y_pred``
    (n, horizon), the true future ``y_true`` (n, horizon) where known, and the intervals ``bands`` (level in percent
    -> lower and upper bounds, each (n, horizon); NaN where a forecast has none) shaded around the forecasts.

    Each band is a ``fill_between`` collection whose gid is ``band-<level>`` (``band-80``), widest first.
    """
    n = min(3, len(x))
    fig = _figure(4 * n, 3.2)
    fig.subplots_adjust(left=0.06, right=0.99, top=0.86, bottom=0.15, wspace=0.08 if share_y else 0.2)
    axes = fig.subplots(1, n, sharey=share_y, squeeze=False)[0]
    n_steps, horizon = x.shape[1], y_pred.shape[1]
    future = np.arange(n_steps, n_steps + horizon)
    levels = sorted(bands or {}, reverse=True)
    for i, ax in enumerate(axes):
        for shade, level in zip(np.linspace(0.15, 0.35, len(levels)) if levels else [], levels):
            lo, hi = bands[level]
            ax.fill_between(future, lo[i], hi[i], color="r", alpha=float(shade), linewidth=0,
                            label=f"{level:g}% interval", gid=f"band-{level:g}")
        ax.plot(np.arange(n_steps), x[i], "b.-", label="inputs")
        if y_true is not None:
            ax.plot(future, y_true[i], "bx-", markersize=8, label="actual")
        ax.plot(future, y_pred[i], "ro-", label="forecast")
        if names is not None:
            ax.set_title(names[i], fontsize=9)
        ax.set_xlabel("t")
        ax.grid(True, alpha=0.3)
    axes[0].set_ylabel("x(t)")
    axes[0].legend(loc="lower left", fontsize=8)
    fig.suptitle(title, fontsize=10)
    return fig


def plot_forecasts(x: np.ndarray, y_true: np.ndarray | None, y_pred: np.ndarray, title: str,
                   bands: dict[float, tuple[np.ndarray, np.ndarray]] | None = None, names: list[str] | None = None,
                   share_y: bool = True) -> bytes:
    """Plot inputs (n, steps), true future (n, horizon; None: not known yet), forecasts (n, horizon) and their
    intervals (see :func:`forecast_figure`) of up to three series as a PNG."""
    return _png(forecast_figure(x, y_pred, title, y_true, bands, names, share_y))


def plot_benchmark_smape(table: list[dict], title: str) -> bytes:
    """Plot test sMAPE by variant (bars grouped by subset, in the table's subset order) as a PNG.

    ``table``: leaderboard rows with ``subset``, ``variant`` and ``smape`` (None: no bar).
    """
    subsets = list(dict.fromkeys(row["subset"] for row in table))
    variants = list(dict.fromkeys(row["variant"] for row in table))
    smape = {(row["subset"], row["variant"]): row["smape"] for row in table}
    fig = _figure(min(14.0, max(6.0, 0.6 * len(variants) + 2)), 4.8)
    fig.subplots_adjust(left=0.07, right=0.99, top=0.84, bottom=0.26)
    ax = fig.add_subplot()
    width = 0.8 / len(subsets)
    positions = np.arange(len(variants))
    for i, subset in enumerate(subsets):
        heights = [smape.get((subset, v)) for v in variants]
        ax.bar(positions + (i - (len(subsets) - 1) / 2) * width,
               [np.nan if h is None else h for h in heights], width, label=subset)
    ax.set_xticks(positions, variants, rotation=45, ha="right", fontsize=8)
    ax.set_xlim(-0.6, len(variants) - 0.4)
    ax.set_ylabel("test sMAPE (0-200)")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=8, ncols=len(subsets), loc="lower left", bbox_to_anchor=(0, 1.0), frameon=False)
    fig.suptitle(title, fontsize=10)
    return _png(fig)

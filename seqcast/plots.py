"""The chapter's two plots for every run: learning curves and forecasts of three validation series."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_learning_curves(history: list[dict], path: Path, title: str) -> Path:
    """Plot loss and val_loss by epoch (log scale) to a PNG."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.6))
    epochs = [row["epoch"] for row in history]
    ax.plot(epochs, [row["loss"] for row in history], "b.-", label="training loss")
    ax.plot(epochs, [row["val_loss"] for row in history], "r.-", label="validation loss")
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("MSE")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def plot_forecasts(x: np.ndarray, y_true: np.ndarray, y_pred: np.ndarray, path: Path, title: str) -> Path:
    """Plot inputs (n, steps), true future (n, horizon) and forecasts (n, horizon) of up to three series."""
    plt = _pyplot()
    n = min(3, len(x))
    fig, axes = plt.subplots(1, n, figsize=(4 * n, 3.2), sharey=True, squeeze=False)
    n_steps, horizon = x.shape[1], y_true.shape[1]
    future = np.arange(n_steps, n_steps + horizon)
    for i, ax in enumerate(axes[0]):
        ax.plot(np.arange(n_steps), x[i], "b.-", label="inputs")
        ax.plot(future, y_true[i], "bx-" if horizon > 1 else "bx", markersize=8, label="actual")
        ax.plot(future, y_pred[i], "ro-" if horizon > 1 else "ro", label="forecast")
        ax.set_xlabel("t")
        ax.grid(True, alpha=0.3)
    axes[0][0].set_ylabel("x(t)")
    axes[0][0].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path

"""The chapter's synthetic series, dataset specs with content-derived ids, and training targets."""

from __future__ import annotations

import hashlib
import json
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

GENERATOR_VERSION = 1


def generate_time_series(n_series: int, n_steps: int, seed: int) -> np.ndarray:
    """Return two noisy sine waves per series, float32, shape (n_series, n_steps, 1).

    Bit-identical to the book's ``np.random.seed(seed); generate_time_series(n_series, n_steps)``,
    but draws from a private RandomState so the global numpy state is left alone.
    """
    rng = np.random.RandomState(seed)
    freq1, freq2, offsets1, offsets2 = rng.rand(4, n_series, 1)
    t = np.linspace(0, 1, n_steps)
    series = 0.5 * np.sin((t - offsets1) * (freq1 * 10 + 10))
    series += 0.2 * np.sin((t - offsets2) * (freq2 * 20 + 20))
    series += 0.1 * (rng.rand(n_series, n_steps) - 0.5)
    return series[..., np.newaxis].astype(np.float32)


class SyntheticSpec(BaseModel):
    """Everything that determines a generated dataset; its id is a hash of this content."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["synthetic"] = "synthetic"
    n_series: int = Field(10_000, ge=1)
    n_steps: int = Field(50, ge=2, description="input steps per window")
    horizon: int = Field(1, ge=1, description="future steps per window")
    seed: int = 42
    n_train: int = Field(7_000, ge=1)
    n_valid: int = Field(2_000, ge=1)
    n_test: int = Field(1_000, ge=0)
    generator_version: int = GENERATOR_VERSION

    @model_validator(mode="after")
    def _split_fits(self) -> SyntheticSpec:
        total = self.n_train + self.n_valid + self.n_test
        if total > self.n_series:
            raise ValueError(
                f"split train/valid/test = {self.n_train}/{self.n_valid}/{self.n_test} needs {total} series, "
                f"but n_series is {self.n_series}"
            )
        return self

    @property
    def dataset_id(self) -> str:
        return dataset_id_for(self.model_dump())

    @property
    def window_length(self) -> int:
        return self.n_steps + self.horizon


def dataset_id_for(spec: dict) -> str:
    """Return ``ds-`` plus the first 12 hex digits of the SHA-256 of the spec's canonical JSON."""
    canonical = json.dumps(spec, sort_keys=True, separators=(",", ":"))
    return "ds-" + hashlib.sha256(canonical.encode()).hexdigest()[:12]


def generate_splits(spec: SyntheticSpec) -> dict[str, np.ndarray]:
    """Generate the spec's series and split them in order; each split has shape (n, n_steps + horizon)."""
    series = generate_time_series(spec.n_series, spec.window_length, spec.seed)[..., 0]
    bounds = np.cumsum([0, spec.n_train, spec.n_valid, spec.n_test])
    return {name: series[lo:hi] for name, lo, hi in zip(("train", "valid", "test"), bounds[:-1], bounds[1:])}


def split_windows(windows: np.ndarray, n_steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Split windows (n, n_steps + horizon) into inputs (n, n_steps, 1) and future values (n, horizon)."""
    return windows[:, :n_steps, np.newaxis], windows[:, n_steps:]


def sequence_targets(windows: np.ndarray, n_steps: int, horizon: int) -> np.ndarray:
    """Return (n, n_steps, horizon) targets: at step t, the ``horizon`` values after t (the chapter's Y)."""
    steps = np.arange(n_steps)[:, None] + np.arange(1, horizon + 1)[None, :]
    return windows[:, steps]

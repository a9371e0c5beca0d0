"""Ensemble variants: the element-wise median of their members' forecasts, each member an ordinary trained run."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from seqcast.config.params import ForecastParams
from seqcast.models.registry import Member, Variant, get_variant


@dataclass
class EnsembleMember:
    """A member's trained run as forecasting needs it: its variant, its loaded model and the frame it was fitted in."""

    run_id: str
    variant: Variant
    model: Any
    window_norm: str


@dataclass
class EnsembleModel:
    """What an ensemble run's model is: its members, whose forecasts it takes the median of."""

    members: list[EnsembleMember]


def member_params(params: ForecastParams, member: Member) -> ForecastParams:
    """A member's forecast-flow parameters: the ensemble's (resolved on its dataset, when it has one), with the
    member's variant, seed, loss and input window.

    The member keeps its own hyperparameter defaults (an ensemble takes none) and its own XLA default unless the
    ensemble's was changed, so that a member is the same training as a plain run of its variant and reuses one.
    """
    ensemble = get_variant(params.variant)
    values = {**params.model_dump(), "variant": member.variant, "seed": params.seed + member.seed_offset,
              "loss": member.loss or params.loss, "units": None, "dropout": None, "recurrent_dropout": None,
              "input_steps": math.ceil(member.input_share * params.n_steps) if member.input_share < 1 else None,
              "jit_compile": None if params.jit_compile == ensemble.jit_compile else params.jit_compile}
    return ForecastParams(**values)


def median_forecast(forecasts: list[np.ndarray]) -> np.ndarray:
    """The element-wise median of the members' forecasts, each (n, horizon) in original units -> (n, horizon).

    The median, not the mean: a member that failed on a few series cannot drag the ensemble with it.
    """
    return np.median(np.stack(forecasts), axis=0)

"""The champion of a dataset: the model its forecasts come from, chosen by backtest MASE with a margin.

The candidates are the completed backtests on the dataset, scored over all their cutoffs (``backtest_scores`` with
cutoff NULL). Only backtests over the same cutoffs compare (the same horizon, number of windows and step), so the
choice is made among the cutoff set that the most models were backtested on (ties: the one backtested last). There
each model counts once, with its newest backtest: a trained model is its forecast run (the run that forecast
cutoff 0), a variant without one (``naive``, the ``stats_*`` baselines) is the variant itself.

The best candidate has the lowest MASE (ties: sMAPE). It becomes champion outright when there is none yet, or when
the sitting champion has no backtest over these cutoffs; otherwise it replaces the sitting champion only when its
MASE is lower by more than ``margin`` percent, so that noise between two close models does not switch the forecasts
back and forth.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, field_validator

from seqcast.config.params import plain_id
from seqcast.models.registry import get_variant

MARGIN_HELP = ("percent of backtest MASE by which a challenger must beat the champion to replace it; default: "
               "$SEQCAST_CHAMPION_MARGIN, else 2")


class ChampionParams(BaseModel):
    """Which dataset's champion to choose, and the margin a challenger must beat it by."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    dataset_id: str = Field(description="an ingested dataset with completed backtests")
    margin: float | None = Field(None, ge=0, lt=100, description=MARGIN_HELP)

    _plain_ids = field_validator("dataset_id")(plain_id)


@dataclass(frozen=True)
class Candidate:
    """A model that can serve a dataset's forecasts, and its backtest over all cutoffs.

    ``run_id``: the forecast run whose model forecast the backtest's cutoff 0, or the backtest itself for a variant
    without a model (``naive``, ``stats_*``), which forecasts each series from its history when it serves.
    """

    run_id: str
    variant: str
    backtest_run_id: str
    mase: float
    smape: float
    horizon: int
    windows: int
    cutoff_step: int | None  # None: one window
    finished_at: datetime

    @property
    def key(self) -> tuple[str, str | None]:
        """What makes two backtests the same model: the variant and its trained run (None: no model)."""
        return serving_key(self.variant, self.run_id, self.backtest_run_id)

    @property
    def cutoffs(self) -> tuple[int, int, int | None]:
        return self.horizon, self.windows, self.cutoff_step


@dataclass(frozen=True)
class Sitting:
    """The champion recorded last for the dataset."""

    choice_id: str
    run_id: str
    variant: str
    backtest_run_id: str

    @property
    def key(self) -> tuple[str, str | None]:
        return serving_key(self.variant, self.run_id, self.backtest_run_id)


@dataclass(frozen=True)
class Choice:
    """A choice of champion among ``ranked`` (best first): who, against whom, and why."""

    dataset_id: str
    champion: Candidate
    runner_up: Candidate | None
    previous: Sitting | None
    held_score: float | None  # the sitting champion's MASE over these cutoffs; None: it has none here
    margin: float
    replaced: bool
    reason: str
    ranked: list[Candidate]


def serving_key(variant: str, run_id: str, backtest_run_id: str) -> tuple[str, str | None]:
    return variant, None if run_id == backtest_run_id else run_id


def check_margin(margin: float) -> float:
    """The margin in percent, 0 <= margin < 100; ValueError otherwise."""
    margin = float(margin)
    if not 0 <= margin < 100:
        raise ValueError(f"margin must be a percentage from 0 up to 100, got {margin:g}")
    return margin


def servable(variant: str) -> bool:
    """Whether predict can forecast the future with the variant (iterative ones forecast held-out windows only)."""
    return get_variant(variant).target != "iterative"


def contest(candidates: list[Candidate]) -> list[Candidate]:
    """The candidates that compare, best first: those over the cutoff set most models were backtested on, each
    model once with its newest backtest, ranked by MASE, then sMAPE."""
    newest: dict[tuple, Candidate] = {}
    for c in sorted(candidates, key=lambda c: (c.finished_at, c.backtest_run_id)):
        if servable(c.variant):
            newest[(c.cutoffs, c.key)] = c
    groups: dict[tuple, list[Candidate]] = {}
    for (cutoffs, _), c in newest.items():
        groups.setdefault(cutoffs, []).append(c)
    if not groups:
        return []
    chosen = max(groups.values(), key=lambda g: (len(g), max(c.finished_at for c in g)))
    return sorted(chosen, key=lambda c: (c.mase, c.smape, c.backtest_run_id))


def choose(dataset_id: str, candidates: list[Candidate], sitting: Sitting | None, margin: float) -> Choice:
    """Choose the dataset's champion among its backtested ``candidates`` (see the module docstring).

    Raises ValueError when no candidate has a backtest MASE.
    """
    margin = check_margin(margin)
    ranked = contest([c for c in candidates if c.mase is not None and c.smape is not None])
    if not ranked:
        raise ValueError(f"dataset {dataset_id} has no completed backtest with a MASE to choose a champion from")
    best = ranked[0]
    held = next((c for c in ranked if sitting is not None and c.key == sitting.key), None)
    if sitting is None:
        champion, reason = best, "first champion: the lowest backtest MASE"
    elif held is None:
        champion, reason = best, (f"the sitting champion ({sitting.variant}, run {sitting.run_id}) has no backtest "
                                  f"over these cutoffs; the lowest backtest MASE takes over")
    elif held is best:
        champion, reason = held, "the sitting champion still has the lowest backtest MASE"
    else:
        gain = 100 * (1 - best.mase / held.mase) if held.mase > 0 else 0.0
        if gain > margin or margin == 0:  # no margin: the ranking alone decides, sMAPE breaking a tie
            champion, reason = best, (f"{best.variant} beats the sitting {held.variant} by {gain:.2f}% of MASE, "
                                      f"more than the {margin:g}% margin")
        else:
            champion, reason = held, (f"{best.variant} beats the sitting {held.variant} by {gain:.2f}% of MASE, "
                                      f"within the {margin:g}% margin: the champion stays")
    runner_up = next((c for c in ranked if c is not champion), None)
    return Choice(dataset_id, champion, runner_up, sitting, held.mase if held else None, margin,
                  sitting is not None and champion.key != sitting.key, reason, ranked)

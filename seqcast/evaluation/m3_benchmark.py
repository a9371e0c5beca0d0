"""The M3 benchmark: which variants it runs, how it trains them, and its leaderboard from per-series scores.

Every subset of M3 is ingested as a last-horizon dataset (``seqcast.data.m3``) and every chosen variant runs on it
through the ordinary forecast flow. The leaderboard has one row per subset and variant, read from the
``benchmark_scores`` view, and one ``overall`` row per variant: the mean of the per-series sMAPE and MASE over every
series of the subsets it ran on (the M competitions' overall figure, not the mean of the subsets' means, which
would weigh a yearly series more than twice as much as a monthly one), with OWA against Naive2 on the same series.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from seqcast.config.params import ForecastParams
from seqcast.data.m3 import INPUT_STEPS, SUBSETS
from seqcast.evaluation.aggregate import subset_scores
from seqcast.evaluation.backtest import MAX_WINDOWS
from seqcast.models.registry import REGISTRY, get_variant

Subset = Literal["yearly", "quarterly", "monthly", "other"]
OVERALL = "overall"
# the interval scores of a run's backtest on the test values, beside its point scores (storage's benchmark_scores)
INTERVAL_SCORES = ("coverage_80", "msis_80", "coverage_95", "msis_95")

# Training settings per family, so that every subset with every default variant fits 90 minutes on 2 cores, with
# room for variants added later; bench/results/m3-budget.md has the epoch times and the estimate behind them.
# Early stopping ends most runs well before the maximum, which only bounds the slowest ones. M3's training windows
# (most of them monthly) are several times the book's 7000, and on a CPU a step of 128 windows costs far less than
# four steps of 32, above all for the recurrent models, so the models take batches of 128. The linear model's steps
# are so cheap that it keeps the notebook's batch of 32, and more epochs.
TRAINING: dict[str, dict[str, int]] = {
    "linear": {"epochs": 50, "patience": 5, "batch_size": 32},
    "rnn": {"epochs": 20, "patience": 3, "batch_size": 128},
    "lstm": {"epochs": 20, "patience": 3, "batch_size": 128},
    "gru": {"epochs": 20, "patience": 3, "batch_size": 128},
    "cnn": {"epochs": 20, "patience": 3, "batch_size": 128},
    "nbeats": {"epochs": 30, "patience": 3, "batch_size": 128},
    # The mlp's steps are nearly as cheap as the linear model's, and it scores best with the small batch; an
    # ensemble passes its settings to its members, so the plain mlp run is the ensemble's first member, reused.
    "mlp": {"epochs": 30, "patience": 5, "batch_size": 32},
    "ensemble": {"epochs": 30, "patience": 5, "batch_size": 32},
}
# A family without its own entry (one added later) trains with these.
DEFAULT_TRAINING = {"epochs": 20, "patience": 3, "batch_size": 128}


def _manifest(subset: str) -> dict:
    """What ``ForecastParams.for_dataset`` reads of an ingested M3 subset, without the data."""
    spec = {"n_steps": INPUT_STEPS[subset], "horizon": SUBSETS[subset].h, "split": "last-horizon",
            "kind": "ingested"}
    return {"spec": spec, "shapes": {"train": [1], "valid": [1]}, "tables": ["values"]}


def fits_benchmark(variant: str, subsets=tuple(SUBSETS)) -> bool:
    """Whether ``variant`` forecasts these M3 subsets as ingested, by the forecast flow's own checks.

    The chapter's one-step variants are left out: on a dataset they forecast its whole horizon, as the same
    models as their multi-step twins (``linear`` is ``linear_10``, ``naive`` is ``naive_10``, ``deep_rnn_dense``
    is ``seq2vec_rnn``), so the benchmark would train each twice.
    """
    if get_variant(variant).horizon == 1:
        return False
    for subset in subsets:
        try:
            ForecastParams(variant=variant, dataset_id=f"m3-{subset}").for_dataset(_manifest(subset))
        except ValueError:
            return False
    return True


def default_variants() -> list[str]:
    """Every registered variant that fits every M3 subset, in the registry's order: new variants join by
    themselves."""
    return [name for name in REGISTRY if fits_benchmark(name)]


def training_settings(variant: str) -> dict[str, int]:
    """The benchmark's epochs, patience and batch size for a variant; none for one that trains nothing."""
    kind = get_variant(variant)
    return dict(TRAINING.get(kind.family, DEFAULT_TRAINING)) if kind.trainable or kind.members else {}


class Anchor(BaseModel):
    """A reference figure to show beside the benchmark's own: published, or measured outside seqcast."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    subset: Subset | Literal["overall"]
    variant: str
    smape: float | None = None
    mase: float | None = None
    coverage_80: float | None = None  # a reference for the intervals: e.g. statsforecast's own ETS intervals
    msis_80: float | None = None
    coverage_95: float | None = None
    msis_95: float | None = None
    source: str = Field(description="where the figure comes from, e.g. a paper or a library and its version")
    kind: Literal["published", "measured"]

    def text(self) -> str:
        figures = [f"sMAPE {self.smape:.2f}" if self.smape is not None else "",
                   f"MASE {self.mase:.3f}" if self.mase is not None else "",
                   *(f"{name.replace('_', ' ').replace('msis', 'MSIS')} "
                     f"{value:.{1 if name.startswith('coverage') else 2}f}"
                     for name in INTERVAL_SCORES if (value := getattr(self, name)) is not None)]
        return f"{self.kind}: {' '.join(f for f in figures if f)} ({self.source})"


class BenchmarkParams(BaseModel):
    """The M3 benchmark flow's parameters: the subsets and variants to run, validated before any work."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    subsets: list[Subset] = Field(default_factory=lambda: list(SUBSETS),
                                  description="M3 subsets to run; default: all four")
    variants: list[str] = Field(default_factory=default_variants,
                                description="variants to run on every subset; default: every registered variant "
                                            "that fits an ingested M3 subset")
    anchors: list[Anchor] = Field(default_factory=list, description="reference figures shown beside the table")
    backtest_windows: int | None = Field(None, ge=2, le=MAX_WINDOWS,
                                         description="also backtest every run from this many cutoffs (the test "
                                                     "cutoff and earlier ones), so that its conformal intervals "
                                                     "are scored on the test values; default: no backtests")
    refit: bool = Field(False, description="the backtests train a model per cutoff on the values before it (the "
                                           "honest residuals for trained variants); needs backtest_windows")

    @model_validator(mode="after")
    def _refit_needs_backtests(self) -> BenchmarkParams:
        if self.refit and self.backtest_windows is None:
            raise ValueError("refit is an option of the backtests: set backtest_windows as well")
        return self

    @field_validator("subsets", "variants")
    @classmethod
    def _some_distinct(cls, values: list[str], info) -> list[str]:
        if not values:
            raise ValueError(f"name at least one of the {info.field_name}")
        return list(dict.fromkeys(values))

    @field_validator("variants")
    @classmethod
    def _fitting(cls, variants: list[str]) -> list[str]:
        for name in variants:
            get_variant(name)
        refused = [name for name in variants if not fits_benchmark(name)]
        if refused:
            raise ValueError(f"variant(s) {', '.join(refused)} do not fit an ingested M3 subset (one-step, "
                             f"iterative or fixed-horizon); the variants that do: {', '.join(default_variants())}")
        return variants

    def forecast_params(self, variant: str, dataset_id: str) -> ForecastParams:
        """One run's forecast parameters: the variant on the dataset with the benchmark's training settings."""
        return ForecastParams(variant=variant, dataset_id=dataset_id, **training_settings(variant))

    def backtest_params(self, variant: str, dataset_id: str) -> dict | None:
        """The backtest flow's parameters for a run of the benchmark, or None without backtests: the same training
        settings, so that its cutoff 0 is the benchmark's run, reused."""
        if self.backtest_windows is None:
            return None
        refit = self.refit and (get_variant(variant).trainable or bool(get_variant(variant).members))
        return {"variant": variant, "dataset_id": dataset_id, "windows": self.backtest_windows, "refit": refit,
                "parameters": training_settings(variant)}


def leaderboard(runs: list[dict], scores: list[dict], series: list[dict],
                anchors: list[Anchor] = ()) -> list[dict]:
    """The benchmark's table: one row per subset and variant, then one ``overall`` row per variant.

    ``runs``: one dict per forecast run of the benchmark (subset, variant, run_id, state, wall_s);
    ``scores``: the test split's ``benchmark_scores`` rows of those runs (run_id, smape, mase, owa, n_series, and
    the interval scores of the run's backtest, None without one);
    ``series``: the test split's ``series_scores`` rows of those runs (run_id, predictor, smape, mase), the
    run's own (``model``) and Naive2's. A run without scores keeps its row, with its state and no figures.
    """
    by_run = {row["run_id"]: row for row in scores}
    subset_order = {name: i for i, name in enumerate(SUBSETS)}
    notes: dict[tuple[str, str], str] = {}
    every_subset = {run["subset"] for run in runs} >= set(SUBSETS)
    for a in anchors:
        if a.subset == OVERALL and not every_subset:  # an overall figure is for all of M3, not for a part
            continue
        key = (a.subset, a.variant)
        notes[key] = f"{notes[key]}; {a.text()}" if key in notes else a.text()
    table = []
    for run in runs:
        score = by_run.get(run["run_id"], {})
        table.append({"subset": run["subset"], "variant": run["variant"], "smape": score.get("smape"),
                      "mase": score.get("mase"), "owa": score.get("owa"), "n_series": score.get("n_series"),
                      **{name: score.get(name) for name in INTERVAL_SCORES},
                      "wall_s": run.get("wall_s"), "epochs": run.get("epochs"), "state": run["state"],
                      "anchor": notes.get((run["subset"], run["variant"]), ""), "run_id": run["run_id"]})

    # overall: every series counts once, whichever subset it is in; a series without a MASE scale is left out
    variant_of = {run["run_id"]: run["variant"] for run in runs}
    columns: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for row in series:
        variant = variant_of.get(row["run_id"])
        if variant is not None and row["smape"] is not None and row["mase"] is not None:
            columns.setdefault((variant, row["predictor"]), []).append((row["smape"], row["mase"]))
    overall = []
    for variant in dict.fromkeys(run["variant"] for run in runs):
        own = [run for run in runs if run["variant"] == variant]
        model, base = (np.array(columns.get((variant, p), []), dtype=np.float64).reshape(-1, 2)
                       for p in ("model", "naive2"))
        scores = subset_scores(model[:, 0], model[:, 1], base[:, 0], base[:, 1])
        states = {run["state"] for run in own}
        # the subsets' horizons differ, so coverage over all of them is not the mean of theirs: left out
        overall.append({"subset": OVERALL, "variant": variant, "smape": scores["smape"], "mase": scores["mase"],
                        "owa": scores["owa"], "n_series": len(model) or None, **dict.fromkeys(INTERVAL_SCORES),
                        "wall_s": sum(run.get("wall_s") or 0.0 for run in own),
                        "epochs": None, "state": states.pop() if len(states) == 1 else "mixed",
                        "anchor": notes.get((OVERALL, variant), ""), "run_id": None})

    def rank(row):
        return (subset_order.get(row["subset"], len(subset_order)), row["owa"] is None, row["owa"] or 0.0,
                row["variant"])

    return sorted(table, key=rank) + sorted(overall, key=rank)

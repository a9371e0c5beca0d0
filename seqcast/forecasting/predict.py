"""Batch forecasting: pick a trained run, take the latest window of every series, forecast the next horizon."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from seqcast.config.params import plain_id
from seqcast.data.ingest import (
    IngestError,
    IngestParams,
    MissingPolicy,
    Series,
    future_timestamps,
    interpolate_within_parts,
    latest_input,
    period_of,
)
from seqcast.data.scaling import Scaler
from seqcast.evaluation.holdout import SplitSeries, series_order
from seqcast.forecasting.champion import MARGIN_HELP
from seqcast.forecasting.intervals import DEFAULT_LEVELS, Calibration, bounds, history_scale, level_name
from seqcast.models.registry import REGISTRY, get_variant

# --family and --variant choose among trained runs by validation MSE; a statistical baseline serves as a dataset's
# champion (chosen by backtest) or by --run-id
FAMILIES = sorted({v.family for v in REGISTRY.values() if v.target != "stats"})


class PredictParams(BaseModel):
    """Which model forecasts which series; every field is a plain value, so a schedule can carry it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    run_id: str | None = Field(None, description="the trained run to use; default: the dataset's champion (the best "
                                                 "backtest MASE)")
    dataset_id: str | None = Field(None, description="dataset whose series to forecast (and, without run_id, "
                                                     "whose champion forecasts them); default: the run's dataset")
    family: str | None = Field(None, description=f"choose the best run of this family: {', '.join(FAMILIES)}")
    variant: str | None = Field(None, description="choose the best run of this variant")
    source: str | None = Field(None, description="a new long-format CSV/Parquet file to forecast instead")
    id_column: str | None = "series_id"
    time_column: str = "timestamp"
    value_column: str = "value"
    freq: str | None = None
    missing: MissingPolicy = "fail"
    output: str | None = Field(None, description="also write the forecasts to this Parquet file")
    margin: float | None = Field(None, ge=0, lt=100, description=MARGIN_HELP)

    _plain_ids = field_validator("run_id", "dataset_id")(plain_id)

    @field_validator("family")
    @classmethod
    def _known_family(cls, family: str | None) -> str | None:
        if family is not None and family not in FAMILIES:
            raise ValueError(f"unknown family {family!r}; families: {', '.join(FAMILIES)}")
        return family

    @field_validator("variant")
    @classmethod
    def _known_variant(cls, variant: str | None) -> str | None:
        if variant is not None and get_variant(variant).needs_dataset:
            raise ValueError(f"variant {variant!r} {_is_or_combines(variant)} a statistical baseline, which --variant "
                             f"does not choose (it ranks trained runs by validation MSE); it forecasts as the "
                             f"dataset's champion (predict --dataset-id without --variant) or by --run-id")
        return variant

    @model_validator(mode="after")
    def _which_model(self) -> PredictParams:
        if self.run_id is None and self.dataset_id is None:
            raise ValueError("name a run_id, or a dataset_id to use its champion (or, with family or variant, its best "
                             "run)")
        if self.margin is not None and not self.uses_champion:
            raise ValueError("margin applies to the dataset's champion only: leave out run_id, family and variant")
        if self.source is not None:  # the file's reading options are validated like an ingest's
            self.reader(n_steps=2, horizon=1)
        if self.output is not None:
            output = Path(self.output)
            if output.suffix.lower() != ".parquet" or not output.parent.is_dir():
                raise ValueError(f"output {self.output!r} must be a .parquet file in an existing folder")
        return self

    @property
    def uses_champion(self) -> bool:
        """Whether the dataset's champion forecasts (no run, family or variant named)."""
        return self.run_id is None and self.family is None and self.variant is None

    def reader(self, n_steps: int, horizon: int) -> IngestParams:
        return IngestParams(source=self.source, id_column=self.id_column, time_column=self.time_column,
                            value_column=self.value_column, freq=self.freq, missing=self.missing,
                            n_steps=n_steps, horizon=horizon, scaling="none")


@dataclass
class ChosenModel:
    """A completed training run and what forecasting with it needs."""

    run_id: str
    variant: str
    dataset_id: str
    model_path: str | None  # relative to the store's root
    n_steps: int
    horizon: int
    scaler: Scaler
    valid_mse: float | None
    window_norm: str = "none"
    backtest_run_id: str | None = None  # a champion's: the backtest it won with, which calibrates its intervals
    choice_id: str | None = None  # a champion's: the champions row that chose it


@dataclass
class LatestWindows:
    """The forecast origin of every series: inputs (n, n_steps) in original units, last input timestamps, and the
    MASE scale of each series' history (n,), NaN where it has none (the width unit of its intervals); for a variant
    that forecasts from each series' history (``stats_*``), that whole history."""

    series_ids: list[str]
    frequencies: list[str]
    last_timestamps: list[pd.Timestamp]
    inputs: np.ndarray
    scales: np.ndarray | None = None
    history: SplitSeries | None = None


def _is_or_combines(variant: str) -> str:
    return "is" if get_variant(variant).target == "stats" else "combines"


def chosen_model(run: dict, manifest: dict | None) -> ChosenModel:
    """What forecasting with a completed run needs, from its runs row and its model's manifest (None: no model).

    A statistical variant (or an ensemble with one) forecasts each series from its whole history, which
    :func:`series_latest` and :func:`file_latest` give it.
    """
    params = json.loads(run["params"])
    kind = get_variant(run["variant"])
    if kind.target == "iterative":
        raise ValueError(f"run {run['run_id']} is an iterative variant; batch forecasting supports direct variants")
    scaler = Scaler.from_dict(manifest.get("scaling")) if manifest else Scaler()
    # the frame the model was trained in; a run recorded before the option existed was trained without one
    window_norm = params.get("window_norm") or "none"
    return ChosenModel(run["run_id"], run["variant"], run["dataset_id"], run["model_path"], params["n_steps"],
                       params["horizon"] or kind.horizon, scaler, run["valid_mse"], window_norm)


def backtest_model(backtest: dict, choice_id: str | None = None) -> ChosenModel:
    """What forecasting with a variant that has no model (``naive``, ``stats_*``) needs, from the ``backtests`` row
    it won with: that backtest stands for the run (``run_id``), as no forecast run needs to exist."""
    params = json.loads(backtest["params"])
    return ChosenModel(backtest["run_id"], backtest["variant"], backtest["dataset_id"], None, params["n_steps"],
                       backtest["horizon"], Scaler(), None, params.get("window_norm") or "none", backtest["run_id"],
                       choice_id)


def full_history(values: dict[str, np.ndarray], periods: dict[str, int], series_ids: list[str],
                 horizon: int) -> SplitSeries:
    """Every observed value of each series (all parts, padding and gaps left out), in the order of ``series_ids``:
    what a statistical variant fits to forecast past the series' end. There are no actual values yet (NaN)."""
    order, runs = series_order(values)
    ids = values["series_id"][order]
    value = np.asarray(values["value"], dtype=np.float64)[order]
    padded = np.asarray(values["padded"], dtype=bool)[order]
    known = {}
    for start, stop in runs:
        v = value[start:stop][~padded[start:stop]]
        known[str(ids[start])] = v[~np.isnan(v)]
    missing = [sid for sid in series_ids if sid not in known]
    if missing:
        raise ValueError(f"series {missing[:5]} have no stored values to forecast from")
    n = len(series_ids)
    return SplitSeries(list(series_ids), [known[sid] for sid in series_ids], np.full((n, horizon), np.nan),
                       np.array([int(periods[sid]) for sid in series_ids], dtype=np.int64))


def series_latest(dataset_id: str, spec: dict, series: list[dict], model: ChosenModel,
                  scales: dict[str, float] | None = None, stored: tuple[dict, dict] | None = None) -> LatestWindows:
    """The latest window of every series of an ingested dataset (its ``series`` table rows, its spec), with the
    series' MASE ``scales`` (series id -> scale; None: a dataset without its per-step values) and, for a variant
    that forecasts from the history, that history from the ``stored`` per-step values and periods."""
    if spec.get("kind") != "ingested":
        raise ValueError(f"dataset {dataset_id} is synthetic: its windows have no timestamps to continue")
    if spec["n_steps"] != model.n_steps:
        raise ValueError(f"model run {model.run_id} takes n_steps={model.n_steps} inputs, but dataset {dataset_id} "
                         f"has n_steps={spec['n_steps']}")
    gaps = [r["series_id"] for r in series if r["latest"] is None]
    if gaps:
        raise IngestError(f"series {', '.join(map(repr, gaps[:5]))} of {dataset_id}: missing values among the "
                          f"last {model.n_steps} steps (n_steps) leave no input to forecast on from the series' end; "
                          f"ingest with missing='interpolate', or forecast a file with those steps filled (--source)")
    ids = [r["series_id"] for r in series]
    history = None
    if get_variant(model.variant).needs_dataset:
        if stored is None:
            raise ValueError(f"{model.variant} forecasts each series from its whole history, which dataset "
                             f"{dataset_id} does not store (ingested before seqcast kept each series' values)")
        history = full_history(*stored, ids, model.horizon)
    return LatestWindows(ids, [r["frequency"] for r in series], [pd.Timestamp(r["latest_end"]) for r in series],
                         np.array([r["latest"] for r in series], dtype=np.float32),
                         np.array([(scales or {}).get(r["series_id"], np.nan) for r in series], dtype=np.float64),
                         history)


def file_latest(series: list[Series], reader: IngestParams, model: ChosenModel) -> LatestWindows:
    """The latest window of every series of a new file, read and validated like an ingest by ``reader`` (see
    :meth:`PredictParams.reader`)."""
    ids, freqs, lasts, inputs, scales, histories, periods, problems = [], [], [], [], [], [], [], []
    for s in series:
        values = interpolate_within_parts(s.values, [(0, len(s.values))]) if reader.missing == "interpolate" \
            else s.values  # a new file is one part: all of it is known history
        stop = latest_input(values, model.n_steps)
        if stop is None:
            problems.append(f"series {s.series_id!r}: missing values among its last {model.n_steps} steps "
                            f"({s.timestamps[-model.n_steps]} .. {s.timestamps[-1]}) leave no input to forecast on "
                            f"from its end (model run {model.run_id} takes n_steps={model.n_steps}); "
                            f"use missing='interpolate' or fill those steps")
            continue
        ids.append(s.series_id)
        freqs.append(s.freq)
        lasts.append(s.timestamps[stop - 1])
        inputs.append(values[stop - model.n_steps:stop])
        periods.append(period_of(s.freq, reader))
        scales.append(history_scale(values[:stop], periods[-1]))
        histories.append(np.asarray(values[:stop], dtype=np.float64)[np.isfinite(values[:stop])])
    if problems:
        raise IngestError("\n  ".join(problems))
    history = None
    if get_variant(model.variant).needs_dataset:  # the file's values are all the history there is
        history = SplitSeries(ids, histories, np.full((len(ids), model.horizon), np.nan),
                              np.array(periods, dtype=np.int64))
    return LatestWindows(ids, freqs, lasts, np.array(inputs, dtype=np.float32), np.array(scales, dtype=np.float64),
                         history)


def forecast_latest(model: ChosenModel, keras_model, latest: LatestWindows) -> np.ndarray:
    """Forecast (n, horizon) values in original units from the (n, n_steps) latest inputs; ``keras_model``: what
    ``seqcast.tasks.evaluate.load_model`` returns for the run (a Keras model, an ensemble's members, or None).

    The inputs go through the dataset's scaler, then the run's window norm; the outputs come back in reverse order.
    """
    from seqcast.evaluation.run import forecast_inputs

    # the scaler raises for series it never saw
    y = forecast_inputs(get_variant(model.variant), keras_model, model.scaler, latest.inputs, latest.series_ids,
                        model.horizon, model.window_norm, latest.history)
    return np.asarray(y, dtype=np.float64)


def forecast_rows(run_id: str, model: ChosenModel, dataset_id: str | None, latest: LatestWindows,
                  values: np.ndarray, calibration: Calibration | None = None,
                  interval_run_id: str | None = None) -> list[dict]:
    """One row per series and future step, with the real timestamps that continue each series and, with a
    ``calibration`` (from the backtest ``interval_run_id``), the conformal intervals at the default levels."""
    n = len(latest.series_ids)
    scales = latest.scales if latest.scales is not None else np.full(n, np.nan)
    found = bounds(calibration, latest.series_ids, values, scales) if calibration is not None else {}
    rows = []
    for i, (sid, freq, last, row) in enumerate(zip(latest.series_ids, latest.frequencies, latest.last_timestamps,
                                                   values)):
        for step, (ts, value) in enumerate(zip(future_timestamps(last, freq, model.horizon), row), 1):
            bands = {}
            for level in DEFAULT_LEVELS:
                lo, hi = found.get(level, (None, None))
                bands[f"lo_{level_name(level)}"] = _finite_or_none(lo[i, step - 1]) if lo is not None else None
                bands[f"hi_{level_name(level)}"] = _finite_or_none(hi[i, step - 1]) if hi is not None else None
            rows.append({"run_id": run_id, "model_run_id": model.run_id, "dataset_id": dataset_id,
                         "series_id": sid, "timestamp": ts.to_pydatetime(), "step": step, "value": float(value),
                         **bands, "interval_run_id": interval_run_id if found else None,
                         "variant": model.variant, "choice_id": model.choice_id})
    return rows


def _finite_or_none(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None

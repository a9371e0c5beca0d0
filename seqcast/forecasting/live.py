"""Live scoring: match stored forecasts with the actual values that have arrived, and flag models that miss.

A forecast step is scored once its timestamp is in a newer file of its series. Its error is scaled like a backtest's
(MASE): by the mean absolute seasonal-naive step of the series' history before the forecast's first step, taken from
the same file, so a live MASE and a backtest MASE are on one scale.
"""

from __future__ import annotations

import math
from datetime import datetime

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from seqcast.config.params import plain_id
from seqcast.data.ingest import IngestParams, MissingPolicy, Series
from seqcast.evaluation.aggregate import or_none
from seqcast.evaluation.interval import has_interval, inside
from seqcast.evaluation.scaled import scaled_errors
from seqcast.forecasting.intervals import DEFAULT_LEVELS, history_scale, level_name

MAX_LISTED = 10
BANDS = ("lo_80", "hi_80", "lo_95", "hi_95")  # the interval columns of a stored forecast
DEFAULT_THRESHOLD = 1.2


class ScoreError(ValueError):
    """A file that scores no stored forecast, or series that have none; the message names them."""


class ScoreParams(BaseModel):
    """Which file holds the actuals and which stored forecasts it scores; the reading options are ingest's."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    source: str = Field(description="CSV or Parquet file in long format holding the actual values (and the "
                                    "series' history, for the MASE scale); required, no default")
    id_column: str | None = "series_id"
    time_column: str = "timestamp"
    value_column: str = "value"
    freq: str | None = None
    missing: MissingPolicy = "fail"
    forecast_run_id: str | None = Field(None, description="score only this predict run's forecasts; default: "
                                                          "every stored forecast of the file's series")
    dataset_id: str | None = Field(None, description="score only the forecasts of this dataset; default: every "
                                                     "dataset's")

    _plain_ids = field_validator("forecast_run_id", "dataset_id")(plain_id)

    @model_validator(mode="after")
    def _readable(self) -> ScoreParams:
        self.reader()  # the reading options are validated like an ingest's
        return self

    def reader(self) -> IngestParams:
        return IngestParams(source=self.source, id_column=self.id_column, time_column=self.time_column,
                            value_column=self.value_column, freq=self.freq, missing=self.missing, n_steps=2,
                            horizon=1, scaling="none")


def scope_text(forecast_run_id: str | None, dataset_id: str | None) -> str:
    """`` of forecast run R`` / `` of dataset D`` / both / nothing: the forecasts a scoring looks at."""
    return "".join(f" of {what} {value}" for what, value in (("forecast run", forecast_run_id),
                                                               ("dataset", dataset_id)) if value)


def score_forecasts(series: list[Series], periods: dict[str, int], forecasts: dict[str, list], score_run_id: str,
                    scored_at: datetime, source: str, actuals_dataset_id: str | None = None,
                    strict: bool = True, scope: str = "") -> tuple[list[dict], list[str]]:
    """Match every stored forecast step (``forecasts``: column -> list, as ``Results.stored_forecasts`` returns)
    whose timestamp has a finite value in ``series``; return its ``forecast_errors`` rows and the problems found.

    Problems: a series of the file with no stored forecast, and a series whose forecasts start after the file ends
    (no actual has arrived). With ``strict`` they raise one ScoreError before any row is returned, as does a file
    that matches no forecast at all; without it (an ingest, which scores what it can) they are only returned.
    """
    by_series = {s.series_id: s for s in series}
    forecast_series = set(forecasts["series_id"])
    problems = [f"series {sid!r} has no stored forecast{scope}" for sid in sorted(set(by_series) - forecast_series)]
    groups: dict[tuple[str, str], list[int]] = {}
    for i, (run_id, sid) in enumerate(zip(forecasts["run_id"], forecasts["series_id"])):
        groups.setdefault((run_id, sid), []).append(i)

    rows, bands, scored_series, origins = [], [], set(), {}
    for (run_id, sid), index in groups.items():
        s = by_series[sid]
        stamps = s.timestamps.to_numpy(dtype="datetime64[us]")
        first = min(np.datetime64(forecasts["timestamp"][i], "us") for i in index)
        origins.setdefault(sid, []).append((first, run_id))
        history = s.values[stamps < first]
        scale = history_scale(history, periods[sid]) if len(history) else math.nan
        position = {t: k for k, t in enumerate(stamps)}
        for i in index:
            k = position.get(np.datetime64(forecasts["timestamp"][i], "us"))
            if k is None or not np.isfinite(s.values[k]):
                continue  # not arrived yet (or a gap the file leaves)
            actual, forecast = float(s.values[k]), float(forecasts["value"][i])
            error = actual - forecast
            rows.append({
                "score_run_id": score_run_id, "run_id": run_id, "model_run_id": forecasts["model_run_id"][i],
                "dataset_id": forecasts["dataset_id"][i], "series_id": sid, "timestamp": forecasts["timestamp"][i],
                "step": forecasts["step"][i], "actual": actual, "forecast": forecast, "error": error,
                "abs_error": abs(error), "scale": or_none(scale), "scored_at": scored_at, "source": source,
                "actuals_dataset_id": actuals_dataset_id})
            bands.append(i)
            scored_series.add(sid)
    _add_scores(rows, [{name: forecasts[name][i] for name in BANDS} for i in bands])
    for sid in sorted(set(origins) - scored_series):
        first, run_id = min(origins[sid])
        last = by_series[sid].timestamps[-1]
        problems.append(f"series {sid!r}: the file ends at {last}, before the first forecast step "
                        f"({np.datetime_as_string(first, unit='s')} of forecast run {run_id}): no actual after the "
                        f"forecast origin has arrived")
    if strict:
        if not rows:
            problems.insert(0, f"the file matches no stored forecast{scope}: no value at a forecast's timestamp "
                               f"(series and timestamps must continue the forecasts' series)")
        if problems:
            shown = problems[:MAX_LISTED]
            more = f"\n  ... and {len(problems) - len(shown)} more" if len(problems) > len(shown) else ""
            raise ScoreError("\n  ".join([f"{len(problems)} problem(s) scoring {source}:", *shown]) + more)
    return rows, problems


def _column(rows: list[dict], name: str) -> np.ndarray:
    return np.array([np.nan if row[name] is None else row[name] for row in rows], dtype=np.float64)


def _add_scores(rows: list[dict], bands: list[dict]) -> None:
    """Give every scored row its scaled error and, per default level, whether its actual is inside the forecast's
    interval (None where the forecast has none)."""
    actual, forecast, scale = (_column(rows, name) for name in ("actual", "forecast", "scale"))
    scaled = scaled_errors(actual, forecast, scale)
    found = {}
    for level in DEFAULT_LEVELS:
        lo, hi = _column(bands, f"lo_{level_name(level)}"), _column(bands, f"hi_{level_name(level)}")
        found[f"inside_{level_name(level)}"] = np.where(has_interval(lo, hi), inside(actual, lo, hi), None)
    for k, row in enumerate(rows):
        row["scaled_error"] = or_none(scaled[k])
        row.update({name: None if flags[k] is None else bool(flags[k]) for name, flags in found.items()})


class MonitorParams(BaseModel):
    """When the monitor flags a dataset, and whether it retrains the model that serves it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    threshold: float = Field(DEFAULT_THRESHOLD, gt=1, allow_inf_nan=False,
                             description="flag a dataset whose live MASE exceeds its backtest MASE by more than "
                                         "this factor")
    min_errors: int = Field(1, ge=1, description="scored forecast steps a model needs before it is judged")
    retrain: bool = Field(False, description="trigger the forecast/<variant> deployment of every flagged model on "
                                             "the newest data of its dataset")


def flagged(health: list[dict], params: MonitorParams) -> list[dict]:
    """The ``live_vs_backtest`` rows whose live MASE exceeds ``threshold`` times the backtest MASE (with at least
    ``min_errors`` scored steps); rows without a backtest MASE are never flagged."""
    return [row for row in health
            if row["mase_ratio"] is not None and row["n_errors"] >= params.min_errors
            and row["mase_ratio"] > params.threshold]

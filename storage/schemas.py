"""The results tables: their Arrow schemas, the column that names the run (commit) each row belongs to, and the
checks rows pass.

The Delta tables of :mod:`seqcast.storage.tables` hold exactly these tables; the views over them are in
:mod:`seqcast.storage.views`.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.dataset as pads

from seqcast.config.names import check_name

TS = pa.timestamp("us", tz="UTC")

SCHEMAS: dict[str, pa.Schema] = {
    "datasets": pa.schema([
        ("dataset_id", pa.string()), ("kind", pa.string()), ("spec", pa.string()), ("n_series", pa.int64()),
        ("n_steps", pa.int32()), ("horizon", pa.int32()), ("n_train", pa.int64()), ("n_valid", pa.int64()),
        ("n_test", pa.int64()), ("path", pa.string()), ("content_hash", pa.string()), ("created_at", TS),
    ]),
    "runs": pa.schema([
        ("run_id", pa.string()), ("flow_run_id", pa.string()), ("variant", pa.string()), ("family", pa.string()),
        ("dataset_id", pa.string()), ("horizon", pa.int32()), ("params", pa.string()), ("model_path", pa.string()),
        ("status", pa.string()), ("started_at", TS), ("finished_at", TS), ("duration_s", pa.float64()),
        ("train_seconds", pa.float64()), ("epochs", pa.int32()), ("n_params", pa.int64()),
        ("base_run_id", pa.string()), ("learning_curve_path", pa.string()), ("forecast_plot_path", pa.string()),
        ("code_version", pa.string()), ("record_path", pa.string()), ("error", pa.string()),
    ]),
    "metrics": pa.schema([
        ("run_id", pa.string()), ("predictor", pa.string()), ("split", pa.string()), ("metric", pa.string()),
        ("horizon_step", pa.int32()), ("value", pa.float64()),
    ]),
    "history": pa.schema([
        ("run_id", pa.string()), ("epoch", pa.int32()), ("loss", pa.float64()), ("val_loss", pa.float64()),
        ("last_time_step_mse", pa.float64()), ("val_last_time_step_mse", pa.float64()), ("seconds", pa.float64()),
    ]),
    "predictions": pa.schema([
        ("run_id", pa.string()), ("split", pa.string()), ("series_index", pa.int64()), ("horizon_step", pa.int32()),
        ("y_true", pa.float64()), ("y_pred", pa.float64()),
    ]),
    "series_scores": pa.schema([  # last-horizon datasets: the run ("model") and Naive2 on the same series
        ("run_id", pa.string()), ("predictor", pa.string()), ("split", pa.string()), ("series_id", pa.string()),
        ("smape", pa.float64()), ("mase", pa.float64()),
    ]),
    "step_scores": pa.schema([
        ("run_id", pa.string()), ("predictor", pa.string()), ("split", pa.string()), ("step", pa.int32()),
        ("smape", pa.float64()), ("mase", pa.float64()),
    ]),
    "split_scores": pa.schema([  # one row per split of a last-horizon run: its series_scores' means and OWA
        ("run_id", pa.string()), ("split", pa.string()), ("smape", pa.float64()), ("mase", pa.float64()),
        ("naive2_smape", pa.float64()), ("naive2_mase", pa.float64()), ("owa", pa.float64()),
        ("n_series", pa.int64()),
    ]),
    "backtests": pa.schema([  # one row per backtest flow run (flows/backtest.py)
        ("run_id", pa.string()), ("flow_run_id", pa.string()), ("variant", pa.string()), ("family", pa.string()),
        ("dataset_id", pa.string()), ("horizon", pa.int32()), ("windows", pa.int32()), ("cutoff_step", pa.int32()),
        ("refit", pa.bool_()), ("params", pa.string()), ("model_run_ids", pa.string()), ("status", pa.string()),
        ("started_at", TS), ("finished_at", TS), ("duration_s", pa.float64()), ("n_series", pa.int64()),
        ("left_out", pa.int64()), ("code_version", pa.string()), ("record_path", pa.string()),
        ("error", pa.string()), ("levels", pa.string()),
    ]),
    "backtest_forecasts": pa.schema([  # every forecast of a backtest, scored (seqcast/evaluation/backtest.py)
        ("run_id", pa.string()), ("cutoff", pa.int32()), ("steps_back", pa.int32()), ("series_id", pa.string()),
        ("step", pa.int32()), ("timestamp", pa.timestamp("us")), ("actual", pa.float64()),
        ("forecast", pa.float64()), ("naive2", pa.float64()), ("smape", pa.float64()),
        ("naive2_smape", pa.float64()), ("scaled_error", pa.float64()), ("naive2_scaled_error", pa.float64()),
        ("padded_steps", pa.int32()), ("scale", pa.float64()), ("lo_80", pa.float64()), ("hi_80", pa.float64()),
        ("lo_95", pa.float64()), ("hi_95", pa.float64()),
    ]),
    "backtest_intervals": pa.schema([  # each level's conformal interval of every backtest forecast (seqcast/intervals)
        ("run_id", pa.string()), ("cutoff", pa.int32()), ("series_id", pa.string()), ("step", pa.int32()),
        ("level", pa.float64()), ("lo", pa.float64()), ("hi", pa.float64()),
    ]),
    # a backtest's scores per cutoff and over all of them (cutoff NULL), and per level (seqcast/evaluation/backtest.py)
    "backtest_cutoff_scores": pa.schema([
        ("run_id", pa.string()), ("cutoff", pa.int32()), ("smape", pa.float64()), ("mase", pa.float64()),
        ("owa", pa.float64()), ("n_series", pa.int64()), ("coverage_80", pa.float64()), ("msis_80", pa.float64()),
        ("coverage_95", pa.float64()), ("msis_95", pa.float64()),
    ]),
    "backtest_level_scores": pa.schema([
        ("run_id", pa.string()), ("cutoff", pa.int32()), ("level", pa.float64()), ("coverage", pa.float64()),
        ("msis", pa.float64()), ("n_forecasts", pa.int64()),
    ]),
    "forecasts": pa.schema([  # written by the predict flow (storage/forecasts.py)
        ("run_id", pa.string()), ("model_run_id", pa.string()), ("dataset_id", pa.string()),
        ("series_id", pa.string()), ("timestamp", pa.timestamp("us")), ("step", pa.int32()), ("value", pa.float64()),
        ("lo_80", pa.float64()), ("hi_80", pa.float64()), ("lo_95", pa.float64()), ("hi_95", pa.float64()),
        ("interval_run_id", pa.string()), ("variant", pa.string()), ("choice_id", pa.string()),
    ]),
    # one row per choice of a dataset's champion (seqcast/forecasting/champion.py); record: choice_id
    "champions": pa.schema([
        ("choice_id", pa.string()), ("dataset_id", pa.string()), ("run_id", pa.string()), ("variant", pa.string()),
        ("backtest_run_id", pa.string()), ("chosen_at", TS), ("score", pa.float64()), ("smape", pa.float64()),
        ("horizon", pa.int32()), ("windows", pa.int32()), ("cutoff_step", pa.int32()),
        ("runner_up_run_id", pa.string()), ("runner_up_variant", pa.string()),
        ("runner_up_backtest_run_id", pa.string()), ("runner_up_score", pa.float64()),
        ("previous_run_id", pa.string()), ("previous_variant", pa.string()), ("previous_score", pa.float64()),
        ("margin", pa.float64()), ("replaced", pa.bool_()), ("reason", pa.string()), ("n_candidates", pa.int32()),
    ]),
    # every stored forecast step whose actual a scoring found (seqcast/forecasting/live.py), one row per scoring of
    # it: run_id is the forecast run, score_run_id the scoring run (`seqcast score`, or an ingest) whose record holds
    # the row
    "forecast_errors": pa.schema([
        ("score_run_id", pa.string()), ("run_id", pa.string()), ("model_run_id", pa.string()),
        ("dataset_id", pa.string()), ("series_id", pa.string()), ("timestamp", pa.timestamp("us")),
        ("step", pa.int32()), ("actual", pa.float64()), ("forecast", pa.float64()), ("error", pa.float64()),
        ("abs_error", pa.float64()), ("scale", pa.float64()), ("scaled_error", pa.float64()),
        ("inside_80", pa.bool_()), ("inside_95", pa.bool_()), ("scored_at", TS), ("source", pa.string()),
        ("actuals_dataset_id", pa.string()),
    ]),
}
TABLES = tuple(SCHEMAS)
# The column that names a table's rows after the run that wrote them (default run_id): a retry replaces them.
# A champion's row names the run it chose in run_id, so its key is its choice_id; a forecast error's row names
# the forecast run it scores, so its key is its scoring run.
RECORD_KEYS = {"champions": "choice_id", "forecast_errors": "score_run_id"}
# Columns that name things: they end up in folder names and in other tools' SQL, so they must be plain names.
NAME_COLUMNS = {"datasets": ("dataset_id",), "runs": ("variant", "dataset_id", "base_run_id"),
                "backtests": ("variant", "dataset_id"), "champions": ("variant", "dataset_id"),
                "forecast_errors": ("dataset_id", "actuals_dataset_id")}


def record_key(table: str) -> str:
    """The column that names a row of ``table`` after the run whose commit holds it."""
    return RECORD_KEYS.get(table, "run_id")


def as_table(name: str, rows: list[dict] | pa.Table) -> pa.Table:
    """Rows (dicts or an Arrow table with at least the schema's columns) as an Arrow table of exactly its schema."""
    if isinstance(rows, pa.Table):
        return rows.select(SCHEMAS[name].names).cast(SCHEMAS[name])
    return pa.Table.from_pylist(rows, schema=SCHEMAS[name])


def check_rows(run_id: str, tables: dict[str, pa.Table]) -> None:
    """Refuse rows that belong to another run than ``run_id``, and names that are not plain names (ValueError)."""
    for name, table in tables.items():
        key = RECORD_KEYS.get(name, "run_id")
        if key in table.column_names:
            others = set(table.column(key).to_pylist()) - {run_id}
            if others:  # rows of another run would escape this run's replace-where and duplicate on a retry
                raise ValueError(f"{name} rows of run {run_id} carry other {key}s: {sorted(map(str, others))[:3]}")
        for column in NAME_COLUMNS.get(name, ()):
            for value in set(table.column(column).to_pylist()) - {None}:
                check_name(f"{name}.{column}", value)


def checked_tables(run_id: str, rows: dict[str, list[dict] | pa.Table]) -> dict[str, pa.Table]:
    """Every table's rows of one run as Arrow tables of its schema; ValueError for a bad name or row, before
    anything touches the disk."""
    check_name("run id", run_id)
    unknown = set(rows) - set(SCHEMAS)
    if unknown:
        raise ValueError(f"unknown result tables {sorted(unknown)}; tables: {', '.join(TABLES)}")
    tables = {name: as_table(name, rows.get(name, [])) for name in TABLES}
    check_rows(run_id, tables)
    return tables


def with_run_id(run_id: str, rows: pa.Table | pads.Dataset | None) -> pa.Table | pads.Dataset | list:
    """A run's rows of a large table: a table of one part gets the run id column; the shards' staged rows (a
    dataset) carry it already; none is no rows."""
    if rows is None:
        return []
    if isinstance(rows, pads.Dataset):
        return rows
    return rows.add_column(0, "run_id", pa.array(np.full(rows.num_rows, run_id, dtype=object), pa.string()))

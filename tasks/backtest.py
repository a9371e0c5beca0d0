"""Backtest stages: check the plan, derive a dataset per refit cutoff, forecast every cutoff of a shard and stage
its rows, calibrate the conformal intervals on every shard's scaled errors, put them around each shard's forecasts
and sum its scores."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from prefect import get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from seqcast.config.params import ForecastParams
from seqcast.data.ingest import build_dataset
from seqcast.data.scaling import Scaler
from seqcast.evaluation.backtest import (
    BacktestParams,
    BacktestSums,
    Cutoff,
    backtest_sums,
    cut_series,
    cutoff_scaling,
    eligible_counts,
    forecast_columns,
    interval_columns,
    refit_input,
    series_index,
)
from seqcast.evaluation.holdout import forecast_groups
from seqcast.evaluation.run import forecast_inputs
from seqcast.forecasting.intervals import DEFAULT_LEVELS, level_name, pooled_quantiles
from seqcast.models.registry import get_variant
from seqcast.reporting.report import artifact_key
from seqcast.storage.datasets import DatasetRef, is_sharded
from seqcast.storage.home import current_store
from seqcast.storage.schemas import SCHEMAS
from seqcast.tasks.evaluate import load_model
from seqcast.tasks.ingest import write_prepared
from seqcast.tasks.progress import Progress

FORECASTS, INTERVALS = "backtest_forecasts", "backtest_intervals"  # the tables a backtest stages shard by shard
POINT_COLUMNS = ("smape", "naive2_smape", "naive2_scaled_error")  # the other scores a shard's partial sums take
# NULL where not finite: a series without a MASE scale has no scaled errors, a forecast without an interval no bounds
NULLABLE = ("scaled_error", "naive2_scaled_error", "scale")


@dataclass
class BacktestPlan:
    """A checked backtest: its dataset, the model's parameters fitted to it, its cutoffs and its shards."""

    dataset: DatasetRef
    forecast_params: ForecastParams
    offsets: list[int]  # each cutoff's steps before the test cutoff, cutoff 0 first
    shards: list[int]  # the dataset's shard numbers; [0] for one not stored in shards
    n_series: int  # series in the dataset
    eligible: list[int]  # per cutoff, the series with the history to be forecast there (gaps aside)


def check_plan(params: BacktestParams) -> BacktestPlan:
    """Resolve the dataset, fit the variant to it and count each cutoff's series from the dataset's per-series
    index, without cutting any; ValueError naming the first problem.

    Runs before any work, in the command as in the flow, so that a backtest that cannot run costs nothing.
    """
    datasets = current_store().datasets
    dataset = datasets.require(params.dataset_id)
    spec = dataset.manifest["spec"]
    if spec.get("split") != "last-horizon":
        raise ValueError(f"a backtest forecasts from cutoffs before each series' test part, so it needs a dataset "
                         f"ingested with split='last-horizon'; dataset {params.dataset_id} was split by "
                         f"{spec.get('split', 'fractions')}")
    forecast_params = ForecastParams(variant=params.variant, dataset_id=params.dataset_id,
                                     **params.parameters).for_dataset(dataset.manifest)
    if is_sharded(dataset):
        table = datasets.read_table(dataset, "series")
        index = {name: table.column(name).to_numpy() for name in ("length", "test_start", "padded_steps", "period")}
        shards = list(range(dataset.manifest["n_shards"]))
    else:
        stored = datasets.read_series_values(dataset)
        if stored is None:
            raise ValueError(f"dataset {params.dataset_id} was ingested before seqcast stored each series' "
                             f"values, which a backtest cuts at its cutoffs; remove its folder and ingest it again")
        values, periods = stored
        index = series_index(values)
        index["period"] = np.array([periods[str(sid)] for sid in index["series_id"]], dtype=np.int64)
        shards = [0]
    offsets = params.offsets(spec["horizon"])
    eligible = eligible_counts(index["length"], index["test_start"], index["padded_steps"], index["period"],
                               spec["horizon"], offsets)
    empty = [k for k, n in enumerate(eligible) if not n]
    if empty:
        raise ValueError(f"cutoff {empty[0]} ({offsets[empty[0]]} steps before the test cutoff) leaves no "
                         f"series of {params.dataset_id} with enough history to forecast from; use fewer windows "
                         f"or a smaller step")
    return BacktestPlan(dataset, forecast_params, offsets, shards, len(index["length"]), eligible)


@task(name="plan-backtest", cache_policy=NO_CACHE)
def plan_backtest(params: BacktestParams) -> BacktestPlan:
    """Check the backtest (see :func:`check_plan`)."""
    plan = check_plan(params)
    get_run_logger().info("%d cutoff(s) over %d shard(s) of %d series: up to %s series at each",
                          len(plan.offsets), len(plan.shards), plan.n_series, ", ".join(map(str, plan.eligible)))
    return plan


@task(name="derive-cutoff-dataset", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[1, 5])
def derive_dataset(plan: BacktestPlan, offset: int) -> DatasetRef:
    """The dataset a refit at a cutoff trains on: every series without its last ``offset`` steps, cut as the
    original was. Content-addressed, so a rerun finds the one it wrote before."""
    datasets, logger = current_store().datasets, get_run_logger()
    values, periods = datasets.read_series_values(plan.dataset)
    series, ingest_params = refit_input(values, periods, plan.dataset.manifest["spec"], offset)
    prepared = build_dataset(series, ingest_params)
    found = datasets.find(prepared.dataset_id)
    if found is not None:
        logger.info("reusing %s for the cutoff %d steps back", found.dataset_id, offset)
        return found
    ref = write_prepared(prepared)
    logger.info("derived %s (%d series) for the cutoff %d steps back", ref.dataset_id, len(series), offset)
    return ref


def shard_values(ref: DatasetRef, shard: int) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """One shard's per-step values (column -> array) and its series' periods; the whole dataset as shard 0 when it
    is not stored in shards."""
    datasets = current_store().datasets
    if not is_sharded(ref):
        if shard != 0:
            raise ValueError(f"dataset {ref.dataset_id} is not stored in shards: it has shard 0 only")
        return datasets.read_series_values(ref)
    found = datasets.shard(ref, shard)
    values = {name: found.values.column(name).to_numpy(zero_copy_only=False) for name in found.values.column_names}
    periods = dict(zip(found.index.column("series_id").to_pylist(), found.index.column("period").to_pylist()))
    return values, periods


@task(name="forecast-shard-cutoffs", cache_policy=NO_CACHE)
def forecast_shard(shard: int, run_id: str, params: ForecastParams, offsets: list[int],
                   model_paths: list[str | None], model_datasets: list[str | None]) -> bool:
    """Forecast every series of one shard from every cutoff, in original units, score each forecast step, and
    stage the shard's ``backtest_forecasts`` rows (their intervals come later, :func:`interval_shard`); return
    False for a shard this run staged before (a retried flow run), which is not forecast again.

    ``offsets``: each cutoff's steps before the test cutoff; ``model_paths``, ``model_datasets``: per cutoff, the
    model that forecasts there and the dataset it was trained on (None for a variant without a model). A
    statistical variant fits every cutoff's series in one pass over this process's cores.
    """
    store = current_store()
    if shard in store.staged.shards(run_id, FORECASTS):
        get_run_logger().info("shard %d: forecasts staged by an earlier try of this run, kept", shard)
        return False
    ref = store.datasets.require(params.dataset_id)
    spec = ref.manifest["spec"]
    values, periods = shard_values(ref, shard)
    cutoffs = cut_series(values, periods, spec["horizon"], spec["n_steps"], offsets)
    del values
    variant, horizon = get_variant(params.variant), params.effective_horizon
    if variant.target == "stats":
        progress = Progress(f"{params.variant} fits of shard {shard} at {len(cutoffs)} cutoff(s)",
                            sum(len(c.series.series_ids) for c in cutoffs), artifact=False)
        found = forecast_groups(variant.method, [c.series for c in cutoffs], horizon, progress)
    else:
        models: dict[str | None, object] = {}
        found = []
        for cutoff, model_path, model_dataset in zip(cutoffs, model_paths, model_datasets):
            if model_path not in models:
                models[model_path] = load_model(model_path)
            scaling = store.datasets.require(model_dataset).manifest.get("scaling") if model_dataset else None
            series = cutoff.series
            scaler = Scaler.from_dict(cutoff_scaling(scaling, cutoff))
            found.append(forecast_inputs(variant, models[model_path], scaler, cutoff.inputs, series.series_ids,
                                         horizon, params.window_norm, series))
    parts = [forecast_columns(cutoff, finite(params.variant, cutoff, forecasts))
             for cutoff, forecasts in zip(cutoffs, found)]
    columns = {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}
    store.staged.write(run_id, FORECASTS, shard, forecasts_table(run_id, columns, {}))
    return True


def finite(variant: str, cutoff: Cutoff, forecasts: np.ndarray) -> np.ndarray:
    """The forecasts of a cutoff (n_series, h) as float64; Diverged when any is NaN or infinite."""
    bad = int((~np.isfinite(forecasts)).any(axis=1).sum())
    if bad:
        from seqcast.training.fit import Diverged

        raise Diverged(f"{variant}: the forecasts of {bad} of {len(forecasts)} series at cutoff {cutoff.index} are "
                       f"NaN or infinite, so the backtest has no meaningful score")
    return np.asarray(forecasts, dtype=np.float64)


def _floats(values: np.ndarray) -> pa.Array:
    """A float64 column, NULL where a value is NaN or infinite (no scale, no interval), as the tables store them."""
    values = np.asarray(values, dtype=np.float64)
    return pa.array(values, pa.float64(), mask=~np.isfinite(values))


def forecasts_table(run_id: str, columns: dict[str, np.ndarray],
                    bounds: dict[float, tuple[np.ndarray, np.ndarray]]) -> pa.Table:
    """The ``backtest_forecasts`` rows of forecast columns (``seqcast.evaluation.backtest.forecast_columns``) and
    the default levels' bounds among ``bounds`` (NULL for a level without)."""
    n = len(columns["cutoff"])
    table = {"run_id": pa.repeat(pa.scalar(run_id), n), "series_id": pa.array(columns["series_id"], pa.string()),
             "timestamp": pa.array(columns["timestamp"], pa.timestamp("us"))}
    for field in SCHEMAS[FORECASTS]:
        if field.name in table:
            continue
        if field.name in columns:
            table[field.name] = (_floats(columns[field.name]) if field.name in NULLABLE
                                 else pa.array(columns[field.name], field.type))
    for level in DEFAULT_LEVELS:
        lo, hi = bounds.get(level, (np.full(n, np.nan), np.full(n, np.nan)))
        table[f"lo_{level_name(level)}"], table[f"hi_{level_name(level)}"] = _floats(lo), _floats(hi)
    return pa.table(table).select(SCHEMAS[FORECASTS].names).cast(SCHEMAS[FORECASTS])


def intervals_table(run_id: str, keys: pa.Table, bounds: dict[float, tuple[np.ndarray, np.ndarray]]) -> pa.Table:
    """The ``backtest_intervals`` rows: each level's interval of every forecast row (``keys``: their ``cutoff``,
    ``series_id`` and ``step``), level after level, NULL where a forecast has none."""
    levels = list(bounds)
    keys = keys.select(["cutoff", "series_id", "step"])
    keys = pa.concat_tables([keys] * len(levels)) if levels else keys.slice(0, 0)
    return pa.table({
        "run_id": pa.repeat(pa.scalar(run_id), keys.num_rows),
        **{name: keys.column(name) for name in keys.column_names},
        "level": pa.array(np.repeat(np.asarray(levels, dtype=np.float64), keys.num_rows // max(len(levels), 1))),
        "lo": _floats(np.concatenate([bounds[level][0] for level in levels]) if levels else np.empty(0)),
        "hi": _floats(np.concatenate([bounds[level][1] for level in levels]) if levels else np.empty(0)),
    }).select(SCHEMAS[INTERVALS].names).cast(SCHEMAS[INTERVALS])


@task(name="calibrate-backtest", cache_policy=NO_CACHE)
def calibrate_backtest(run_id: str, levels: tuple[float, ...], horizon: int) -> dict[int, np.ndarray]:
    """The pooled conformal quantiles of each cutoff (cutoff -> (n_levels, horizon)), from the scaled errors of the
    older cutoffs of every shard's staged forecasts: the one figure of the intervals that needs all series."""
    found = current_store().staged.dataset(run_id, FORECASTS)
    if found is None:
        return {}
    table = found.to_table(columns=["cutoff", "step", "scaled_error"])
    return pooled_quantiles(table.column("cutoff").to_numpy(), table.column("step").to_numpy(),
                            table.column("scaled_error").to_numpy(), horizon, levels)


@task(name="interval-shard", cache_policy=NO_CACHE)
def interval_shard(shard: int, run_id: str, levels: tuple[float, ...], horizon: int, n_cutoffs: int,
                   pooled: dict[int, np.ndarray]) -> BacktestSums:
    """Put each level's conformal interval around every staged forecast of one shard (the pooled quantiles
    ``pooled`` of :func:`calibrate_backtest`, and each series' own where it has enough scores), stage the shard's
    ``backtest_forecasts`` with them and its ``backtest_intervals``, and return the shard's partial sums of the
    scores. Running it again gives the same rows."""
    staged = current_store().staged
    table = staged.read(run_id, FORECASTS, shard)
    columns = {name: table.column(name).to_numpy() for name in
               ("cutoff", "step", "actual", "forecast", "scale", "scaled_error", *POINT_COLUMNS)}
    columns["series_id"] = table.column("series_id").to_numpy(zero_copy_only=False)
    bounds = interval_columns(columns, levels, horizon, pooled)
    staged.write(run_id, INTERVALS, shard, intervals_table(run_id, table, bounds))
    staged.write(run_id, FORECASTS, shard, with_bounds(table, bounds))
    return backtest_sums(columns, bounds, n_cutoffs, levels)


def with_bounds(table: pa.Table, bounds: dict[float, tuple[np.ndarray, np.ndarray]]) -> pa.Table:
    """Staged ``backtest_forecasts`` rows with the default levels' bounds among ``bounds`` (NULL for the others)."""
    n = table.num_rows
    for level in DEFAULT_LEVELS:
        lo, hi = bounds.get(level, (np.full(n, np.nan), np.full(n, np.nan)))
        for name, values in ((f"lo_{level_name(level)}", lo), (f"hi_{level_name(level)}", hi)):
            table = table.set_column(table.schema.get_field_index(name), name, _floats(values))
    return table


def staged_outputs(run_id: str) -> dict:
    """The run's staged ``backtest_forecasts`` and ``backtest_intervals`` as Arrow datasets, which the run's commit
    streams into the tables."""
    staged = current_store().staged
    return {name: staged.dataset(run_id, name) for name in (FORECASTS, INTERVALS)}


@task(name="discard-staged", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[1, 5])
def discard_staged(run_id: str) -> None:
    """Delete the run's staged rows once its commit holds them (or it failed for good)."""
    current_store().staged.discard(run_id)


@task(name="publish-backtest", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[2, 10])
def publish_backtest(variant: str, dataset_id: str, run_id: str, scores: list[dict]) -> None:
    """Publish the backtest's scores per cutoff (and over all of them) as a table artifact."""
    table = [{"cutoff": "all" if row["cutoff"] is None else row["cutoff"], **{k: v for k, v in row.items()
                                                                             if k != "cutoff"}} for row in scores]
    create_table_artifact(table, key=artifact_key(variant, "backtest"),
                          description=f"{variant} backtest {run_id} on {dataset_id}: sMAPE, MASE and OWA per cutoff, "
                                      f"coverage (percent) and MSIS of the intervals at each level")

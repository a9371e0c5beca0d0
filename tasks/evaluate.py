"""Stage 4: score the model and the naive baseline on the valid and test splits (on a last-horizon dataset also
sMAPE, MASE and Naive2 per series); draw the run's plots."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from seqcast.config.params import ForecastParams
from seqcast.data.scaling import Scaler
from seqcast.data.windows import PARTS, cut, part_bounds, window_starts
from seqcast.evaluation.holdout import SplitSeries, split_series, split_series_of
from seqcast.evaluation.run import EVAL_SPLITS, Evaluation, Sums, evaluate, evaluation, score_part
from seqcast.models.ensemble import EnsembleMember, EnsembleModel
from seqcast.models.registry import get_variant
from seqcast.reporting.plots import plot_forecasts, plot_learning_curves
from seqcast.reporting.report import artifact_key
from seqcast.storage.datasets import DatasetRef
from seqcast.storage.home import current_settings, current_store
from seqcast.storage.schemas import with_run_id
from seqcast.tasks.faults import fail_once, kill_once
from seqcast.tasks.progress import Progress


@dataclass
class ScoredRun:
    """A run's evaluation and its stored plots (paths relative to the store's root)."""

    evaluation: Evaluation
    forecast_plot: str | None
    learning_curve: str | None


@task(name="evaluate-shard", task_run_name="evaluate shard {shard}", cache_policy=NO_CACHE)
def evaluate_shard(shard: int, params: ForecastParams, dataset_id: str, model_path: str | None, run_id: str) -> dict:
    """Score one shard of the run's dataset: stage its ``predictions`` and ``series_scores`` rows, then its partial
    sums (``seqcast.evaluation.run.Sums``) and plot inputs, which it returns. A shard staged already (by an earlier
    try of the flow run) is not scored again."""
    store = current_store()
    done = store.staged.part(run_id, shard)
    if done is not None:
        get_run_logger().info("shard %d was scored by an earlier try of this flow run: kept", shard)
        return done
    fault = current_settings().test_fail_once
    if fault:
        fail_once(fault, f"evaluate shard {shard}", get_run_logger())  # proves that a shard is retried alone
        kill_once(fault, f"evaluate shard {shard}", get_run_logger())  # ... and one whose worker is lost
    ref = store.datasets.require(dataset_id)
    horizon, n_steps = params.effective_horizon, params.n_steps
    index = store.datasets.read_table(ref, "series", INDEX_COLUMNS)
    rows = np.flatnonzero(index.column("shard").to_numpy() == shard)
    mine = index.take(rows)
    values = store.datasets.shard(ref, shard, ["value", "part", "padded"]).values
    value = values.column("value").to_numpy(zero_copy_only=False).astype(np.float64)
    ids = np.asarray(mine.column("series_id").to_pylist(), dtype=object)
    lengths = mine.column("length").to_numpy()
    offsets = mine.column("offset").to_numpy()
    splits, window_index = {}, {}
    for split in EVAL_SPLITS:
        start, stop = part_bounds(lengths, mine.column("valid_start").to_numpy(), mine.column("test_start").to_numpy(),
                                  split)
        starts, where = window_starts(value, offsets, start, stop, n_steps, horizon)
        splits[split] = (cut(value, starts, n_steps + horizon), ids[where])
        first = np.maximum(0, start - n_steps)
        window_index[split] = window_bases(index, split, n_steps, horizon)[rows[where]] + \
            (starts - offsets[where] - first[where])
    series = None
    if ref.manifest["spec"].get("split") == "last-horizon":
        parts = {name: pc.equal(values.column("part"), name).to_numpy(zero_copy_only=False) for name in PARTS}
        padded = values.column("padded").to_numpy(zero_copy_only=False)
        periods = mine.column("period").to_numpy()
        series = {split: split_series_of(ids, lengths, periods, value, parts, padded, split, horizon)
                  for split in EVAL_SPLITS}
    variant = get_variant(params.variant)
    progress = None
    if variant.target == "stats" and series is not None:
        progress = Progress(f"{params.variant} fits, shard {shard}",
                            sum(len(series[split].series_ids) for split in EVAL_SPLITS), artifact=False)
    part = score_part(variant, cached_model(model_path), n_steps, horizon, shard_scaler(ref, mine), splits,
                      params.window_norm, series, progress, window_index)
    store.staged.write(run_id, "predictions", shard, with_run_id(run_id, part.predictions))
    if part.series_scores is not None:
        store.staged.write(run_id, "series_scores", shard, with_run_id(run_id, part.series_scores))
    summary = {"sums": part.sums.to_json(),
               "plot": [a.tolist() for a in part.plot_inputs] if part.plot_inputs is not None else None}
    store.staged.write_part(run_id, shard, summary)  # last: the shard is done once this is there
    return summary


# what a shard task reads of the whole dataset's index: where every series' windows fall, and its own series' scaling
INDEX_COLUMNS = ["series_id", "period", "mean", "std", "length", "valid_start", "test_start", "shard", "offset"]


def window_bases(index: pa.Table, split: str, n_steps: int, horizon: int) -> np.ndarray:
    """Where each series' windows of ``split`` begin in the whole split, series in the index's (id) order: the
    windows a series' part can hold, counted before it. A window a gap removed (``missing='drop'``) keeps its place,
    so positions do not depend on which shard holds which series."""
    start, stop = part_bounds(index.column("length").to_numpy(), index.column("valid_start").to_numpy(),
                              index.column("test_start").to_numpy(), split)
    counts = np.maximum(0, stop - np.maximum(0, start - n_steps) - (n_steps + horizon) + 1)
    return np.cumsum(counts) - counts


def shard_scaler(ref: DatasetRef, index: pa.Table) -> Scaler:
    """The dataset's scaler for a shard's series: per series from the shard's index rows, which hold the same
    statistics as the manifest, so a shard task need not build the whole dataset's."""
    scaling = ref.manifest.get("scaling") or {}
    if scaling.get("mode") != "series":
        return Scaler.from_dict(scaling)
    return Scaler("series", dict(zip(index.column("series_id").to_pylist(),
                                     zip(index.column("mean").to_pylist(), index.column("std").to_pylist()))))


@task(name="combine-shards", cache_policy=NO_CACHE)
def combine_shards(params: ForecastParams, dataset: DatasetRef, run_id: str, history: list[dict], parts: list[dict]
                   ) -> ScoredRun:
    """The run's figures from its shards' partial sums, its staged rows as datasets, and its plots."""
    store, logger = current_store(), get_run_logger()
    plot = next((tuple(np.asarray(a) for a in part["plot"]) for part in parts if part["plot"]), None)
    found = evaluation([Sums.from_json(part["sums"]) for part in parts], plot,
                       store.staged.dataset(run_id, "predictions"), store.staged.dataset(run_id, "series_scores"))
    if found.figure("valid") is None and found.figure("test") is None:
        raise ValueError(f"dataset {dataset.dataset_id} has no validation or test window to score")
    return _plots(params, dataset, run_id, history, found, logger)


def _plots(params: ForecastParams, dataset: DatasetRef, run_id: str, history: list[dict], evaluation: Evaluation,
           logger) -> ScoredRun:
    store = current_store()
    title = f"{params.variant} · {dataset.dataset_id}"
    forecast_plot = store.models.write_file(run_id, "forecast.png", plot_forecasts(*evaluation.plot_inputs, title)) \
        if evaluation.plot_inputs else None
    curve = store.models.write_file(run_id, "learning_curve.png", plot_learning_curves(history, title)) \
        if history else None
    logger.info("%s valid MSE %s (naive %s)", params.variant, _figure(evaluation.figure("valid")),
                _figure(evaluation.figure("valid", "naive")))
    return ScoredRun(evaluation, forecast_plot, curve)


def _figure(value: float | None) -> str:
    return "-" if value is None else f"{value:.5f}"


_MODELS: dict[str, object] = {}  # a shard task's process keeps the run's model for the next shard it scores


def cached_model(model_path: str | None):
    """:func:`load_model`, once per process and model."""
    if model_path is None:
        return None
    if model_path not in _MODELS:
        _MODELS.clear()  # one model at a time: a worker moves from run to run
        _MODELS[model_path] = load_model(model_path)
    return _MODELS[model_path]


@task(name="evaluate-model", cache_policy=NO_CACHE)
def evaluate_model(params: ForecastParams, dataset: DatasetRef, model_path: str | None, run_id: str,
                   history: list[dict]) -> ScoredRun:
    """Forecast the horizon after every valid and test window; return MSE/MAE/RMSE rows for model and naive."""
    logger, store = get_run_logger(), current_store()
    fault = current_settings().test_fail_once
    if fault:
        fail_once(fault, "evaluate", logger)  # proves a retry after training keeps the trained model
    model = load_model(model_path)
    splits = {split: store.datasets.read_windows(dataset, split) for split in EVAL_SPLITS}
    variant, series = get_variant(params.variant), series_by_split(dataset, params.effective_horizon)
    progress = None
    if variant.target == "stats" and series is not None:
        progress = Progress(f"{params.variant} fits (valid and test)",
                            sum(len(series[split].series_ids) for split in EVAL_SPLITS),
                            key=artifact_key(params.variant, "fits"))
    evaluation = evaluate(variant, model, params.n_steps, params.effective_horizon,
                          Scaler.from_dict(dataset.manifest.get("scaling")), splits, params.window_norm, series,
                          progress)
    return _plots(params, dataset, run_id, history, evaluation, logger)


def load_model(model_path: str | None):
    """The model a run saved (its path relative to the store's root), as ``forecast_inputs`` takes it: a Keras model,
    an ensemble's :class:`EnsembleModel` of its members' models, or None for variants without one."""
    if model_path is None:
        return None
    models = current_store().models
    if models.is_ensemble(model_path):
        return EnsembleModel([EnsembleMember(m["run_id"], get_variant(m["variant"]), load_model(m["model_path"]),
                                             m["window_norm"]) for m in models.manifest(model_path)["members"]])
    from seqcast.models.layers import CUSTOM_OBJECTS  # imports Keras: only runs with a model pay for it

    return models.load(model_path, CUSTOM_OBJECTS)


def series_by_split(dataset: DatasetRef, horizon: int) -> dict[str, SplitSeries] | None:
    """Each scored split's series (history and part) on a last-horizon dataset that stores its values, else None."""
    if dataset.manifest["spec"].get("split") != "last-horizon":
        return None
    stored = current_store().datasets.read_series_values(dataset)
    if stored is None:
        return None
    values, periods = stored
    return {split: split_series(values, periods, split, horizon) for split in EVAL_SPLITS}

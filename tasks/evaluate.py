"""Stage 4: score the model and the naive baseline on the valid and test splits (on a last-horizon dataset also
sMAPE, MASE and Naive2 per series); draw the run's plots."""

from __future__ import annotations

from dataclasses import dataclass

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from seqcast.config.params import ForecastParams
from seqcast.data.scaling import Scaler
from seqcast.evaluation.holdout import SplitSeries, split_series
from seqcast.evaluation.run import EVAL_SPLITS, Evaluation, evaluate
from seqcast.models.ensemble import EnsembleMember, EnsembleModel
from seqcast.models.registry import get_variant
from seqcast.reporting.plots import plot_forecasts, plot_learning_curves
from seqcast.reporting.report import artifact_key
from seqcast.storage.datasets import DatasetRef
from seqcast.storage.home import current_settings, current_store
from seqcast.tasks.faults import fail_once
from seqcast.tasks.progress import Progress


@dataclass
class ScoredRun:
    """A run's evaluation and its stored plots (paths relative to the store's root)."""

    evaluation: Evaluation
    forecast_plot: str | None
    learning_curve: str | None


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
    title = f"{params.variant} · {dataset.dataset_id}"
    forecast_plot = store.models.write_file(run_id, "forecast.png", plot_forecasts(*evaluation.plot_inputs, title)) \
        if evaluation.plot_inputs else None
    curve = store.models.write_file(run_id, "learning_curve.png", plot_learning_curves(history, title)) \
        if history else None
    logger.info("%s valid MSE %.5f (naive %.5f)", params.variant, evaluation.figure("valid"),
                evaluation.figure("valid", "naive"))
    return ScoredRun(evaluation, forecast_plot, curve)


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

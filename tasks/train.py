"""Stage 3: train a Keras model, or find the trained one-step model an iterative variant reuses."""

from __future__ import annotations

import pyarrow.parquet as pq
from prefect import get_run_logger, task
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.cache_policies import NO_CACHE
from prefect.concurrency.sync import concurrency

from seqcast.params import ForecastParams, normalized_params
from seqcast.scaling import Scaler, read_scaled_split
from seqcast.settings import models_dir, records_dir
from seqcast.training import TrainResult, finished_training, train
from storage.datasets import DatasetRef
from storage.models import run_dir
from storage.results import committed_records, record_files
from tasks.faults import training_fault

TRAINING_LIMIT = "seqcast-training"  # global concurrency limit; `seqcast serve` creates it (deployments.forecast)


@task(name="train-model", cache_policy=NO_CACHE)
def train_model(params: ForecastParams, dataset: DatasetRef, run_id: str) -> TrainResult:
    """Fit the variant on the dataset's training split; save ``model.keras`` + manifest under the run's folder."""
    folder = run_dir(models_dir(), run_id)
    logger = get_run_logger()
    # the scaler travels with the model, so forecasts can be mapped back to original units anywhere
    manifest = {"run_id": run_id, "variant": params.variant, "params": params.model_dump(),
                "dataset_id": dataset.dataset_id, "dataset_content_hash": dataset.manifest["content_hash"],
                "scaling": Scaler.from_dict(dataset.manifest.get("scaling")).to_dict()}
    finished = finished_training(folder, manifest)
    if finished is not None:  # a retry of a flow run whose training had finished: keep that model
        logger.info("%s was already trained in this flow run (%d epochs, %.1f s): reusing %s", params.variant,
                    finished.epochs, finished.train_seconds, finished.model_path)
        return finished
    _, train_windows, _, _ = read_scaled_split(dataset, "train")
    _, valid_windows, _, _ = read_scaled_split(dataset, "valid")
    # Holding a slot of the global limit only while fitting: an iterative_10 run holds none while its base
    # model trains in a subflow, so the limit cannot deadlock. Without the limit (not created) Prefect warns
    # and trains anyway.
    with concurrency(TRAINING_LIMIT, occupy=1):
        progress = create_progress_artifact(0.0, description=f"{params.variant}: share of max epochs trained")
        result = train(params, train_windows, valid_windows, folder, manifest, logger, backup_dir=folder / "backup",
                       callbacks=[epoch_progress(progress, params.epochs), *training_fault(logger)])
    update_progress_artifact(progress, 100.0)  # early stopping ends before max epochs: the training is done
    return result


def epoch_progress(artifact_id, max_epochs: int):
    """Keras callback that moves the run's progress artifact to ``epochs done / max epochs`` after each epoch."""
    import keras

    class _Progress(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            update_progress_artifact(artifact_id, round(100.0 * (epoch + 1) / max_epochs, 1))

    return _Progress()


def training_key(params: dict) -> dict:
    """The parameters that make two trainings of one variant on one dataset interchangeable."""
    return {k: v for k, v in params.items() if k not in ("variant", "horizon", "base_run_id")}


def find_trained_run(variant: str, dataset_id: str, params: ForecastParams, run_id: str | None = None) -> dict | None:
    """Return the newest completed run of ``variant`` on ``dataset_id`` trained with the same parameters.

    With ``run_id``, only that run qualifies, whatever its parameters.
    """
    wanted = training_key(params.model_dump())
    best = None
    for folder in committed_records(records_dir()).values():
        runs_file = record_files(folder).get("runs")
        for row in pq.read_table(runs_file).to_pylist() if runs_file else []:
            same = row["run_id"] == run_id if run_id else training_key(normalized_params(row["params"])) == wanted
            if (row["variant"] == variant and row["dataset_id"] == dataset_id and row["status"] == "completed"
                    and row["model_path"] and same
                    and (best is None or row["finished_at"] > best["finished_at"])):
                best = row
    if best is not None:
        get_run_logger().info("reusing trained %s run %s (%s)", variant, best["run_id"], best["model_path"])
    return best

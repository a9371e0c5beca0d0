"""Training and forecasting with Keras: plain functions that the Prefect tasks call.

Training reads and writes no file itself: the backup its caller hands in keeps what lets a crashed try resume
(Keras's BackupAndRestore writes into the backup's folder), and saving the model is the caller's.
"""

from __future__ import annotations

import json
import logging
import math
import os
import platform
import time
from dataclasses import dataclass
from importlib import metadata
from typing import Any

import numpy as np

from seqcast.config.params import ForecastParams
from seqcast.data.normalise import denormalise, normalise, normalise_like
from seqcast.data.synthetic import sequence_targets, split_windows
from seqcast.evaluation.baselines import naive_forecast
from seqcast.models.registry import CONV_KERNEL, CONV_STRIDES, Variant, build_model, get_variant, last_steps
from seqcast.training.windows import Panel, WindowSampler, fixed_sample, keras_dataset, window_ranges

PREDICT_BATCH_SIZE = 2048
LIBRARIES = ("seqcast", "tensorflow-cpu", "keras", "numpy", "prefect", "pyarrow", "duckdb")


@dataclass
class TrainResult:
    """A trained Keras model and how it got there."""

    model: Any
    epochs: int
    train_seconds: float
    n_params: int
    history: list[dict]


class Diverged(ValueError):
    """A loss or a forecast became NaN or infinite: the run cannot give a meaningful result."""


def divergence_guard(variant: str):
    """Keras callback that stops training at the first non-finite training loss (or validation loss) it sees.

    It raises :class:`Diverged` before the epoch's journal and backup record the non-finite figures.
    """
    import keras

    class _Guard(keras.callbacks.Callback):
        epoch = 0

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

        def on_train_batch_end(self, batch, logs=None):
            self._check(logs, "loss", f"batch {batch + 1} of epoch {self.epoch + 1}")

        def on_epoch_end(self, epoch, logs=None):
            self._check(logs, "val_loss", f"the end of epoch {epoch + 1}")

        def _check(self, logs, key: str, where: str) -> None:
            value = (logs or {}).get(key)
            if value is not None and not math.isfinite(float(value)):
                raise Diverged(f"{variant}: {key} became {float(value)} at {where}, so training stopped; look for "
                               f"extreme values in the data, or lower the learning rate")

    return _Guard()


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return versions


def training_targets(variant: Variant, windows: np.ndarray, n_steps: int, horizon: int) -> np.ndarray:
    """Return the targets a variant is fitted on, from windows (n, n_steps + horizon).

    vector: (n, horizon) future values; sequence: (n, n_steps, horizon), the ``horizon`` values after every
    step; strided: the sequence targets at the steps a Conv1D(kernel 4, strides 2, valid) front end emits.
    """
    if variant.target == "vector":
        return windows[:, n_steps:n_steps + horizon]
    sequence = sequence_targets(windows, n_steps, horizon)
    if variant.target == "sequence":
        return sequence
    if variant.target == "strided":
        return sequence[:, CONV_KERNEL - 1::CONV_STRIDES]
    raise ValueError(f"variant {variant.name!r} is not fitted on targets of its own")


def fitting_pairs(variant: Variant, windows: np.ndarray, n_steps: int, horizon: int,
                  window_norm: str) -> tuple[np.ndarray, np.ndarray]:
    """Inputs (n, n_steps, 1) and targets (see :func:`training_targets`) in the frame of ``window_norm``."""
    x, _ = split_windows(windows, n_steps)
    x, ref, scale = normalise(x, window_norm)
    y = training_targets(variant, windows, n_steps, horizon)
    return x, y if window_norm == "none" else normalise_like(y, ref, scale)


def fixed_length(model, n_steps: int):
    """The model's layers behind an ``(n_steps, 1)`` input, sharing their weights, for training.

    The saved model keeps its ``(None, 1)`` input so that it forecasts from any length (iterative forecasting feeds
    back ever longer sequences); training on the static length lets XLA compile the recurrence and the causal
    convolutions for one shape, which makes an epoch faster (bench/levers.py).
    """
    import keras

    if model.inputs[0].shape[1] == n_steps:  # already fixed (the linear models flatten their input)
        return model
    return keras.Sequential([keras.Input((n_steps, 1)), *model.layers], name=f"{model.name}_fit")


class EpochLogger:
    """Keras callback that logs one line per epoch, so long training shows progress in the Prefect UI.

    With a ``backup`` (see :class:`seqcast.storage.backups.TrainingBackup`: anything with ``read_journal`` and
    ``write_journal``) it also keeps every epoch's figures there: Keras's BackupAndRestore resumes the weights and the
    epoch counter after a crash, but the History of a resumed fit starts at the resumed epoch, so the epochs before
    the crash are known only from the journal.
    """

    def __init__(self, logger: logging.Logger, variant: str, max_epochs: int, backup=None):
        import keras

        class _Callback(keras.callbacks.Callback):
            def on_epoch_begin(cb, epoch, logs=None):
                cb.started = time.perf_counter()

            def on_epoch_end(cb, epoch, logs=None):
                logs = logs or {}
                seconds = time.perf_counter() - cb.started
                row = {"epoch": epoch + 1, "seconds": seconds,
                       **{k: float(v) for k, v in logs.items() if isinstance(v, (float, int))}}
                # an epoch journaled just before a crash but not backed up is run again: keep the new figures
                self.rows = [r for r in self.rows if r["epoch"] <= epoch] + [row]
                if backup is not None:
                    backup.write_journal(self.rows)
                figures = " ".join(f"{k}={v:.5f}" for k, v in logs.items() if isinstance(v, float))
                logger.info("%s epoch %d/%d %s (%.1f s)", variant, epoch + 1, max_epochs, figures, seconds)

        self.rows: list[dict] = backup.read_journal() if backup is not None else []
        if self.rows:
            logger.info("%s resumes after epoch %d (backup of an interrupted try)", variant, self.rows[-1]["epoch"])
        self.callback = _Callback()


def early_stopping(patience: int, backup=None, journal: EpochLogger | None = None):
    """Keras EarlyStopping (best weights restored at the end) whose state survives a crash when ``backup`` is set.

    BackupAndRestore brings back the weights, optimizer and epoch counter, but EarlyStopping starts afresh on
    resume: its patience would count from the resumed epoch and the weights it restores would be the best since
    the crash, not the best of the run. This one keeps its wait, best value and best weights in ``backup`` (a
    :class:`seqcast.storage.backups.TrainingBackup`: ``read_stopping``, ``write_stopping``), written after Keras's
    backup each epoch. A crash between the two writes leaves the state one epoch behind the backup; that epoch is
    then scored from ``journal`` against the restored weights, which are that epoch's.
    """
    import keras

    if backup is None:
        return keras.callbacks.EarlyStopping(patience=patience, restore_best_weights=True)

    class _Resumable(keras.callbacks.EarlyStopping):
        def on_train_begin(self, logs=None):
            super().on_train_begin(logs)
            self.saved = backup.read_stopping()

        def on_epoch_begin(self, epoch, logs=None):
            saved, self.saved = self.saved, None
            if saved is None or epoch == 0:
                return
            state, self.best_weights = saved
            self.wait, self.best, self.best_epoch = state["wait"], state["best"], state["best_epoch"]
            behind = [row for row in (journal.rows if journal else []) if state["epochs"] < row["epoch"] <= epoch]
            if len(behind) == 1 and behind[0]["epoch"] == epoch:  # the epoch backed up just before the crash
                self.on_epoch_end(epoch - 1, {self.monitor: behind[0][self.monitor]})

        def on_epoch_end(self, epoch, logs=None):
            super().on_epoch_end(epoch, logs)
            if self.best_weights is None:
                return
            backup.write_stopping({"epochs": epoch + 1, "wait": self.wait, "best": float(self.best),
                                   "best_epoch": self.best_epoch}, self.best_epoch, self.best_weights)

    return _Resumable(patience=patience, restore_best_weights=True)


def train(params: ForecastParams, train_windows: np.ndarray, valid_windows: np.ndarray, logger: logging.Logger,
          backup=None, callbacks: list | tuple = ()) -> TrainResult:
    """Fit the variant on the training windows (n, n_steps + horizon) with early stopping on the validation windows.

    Inputs and targets are fitted in the frame of ``params.window_norm``, the one :func:`forecast` maps back from.
    ``backup``: where an interrupted fit leaves what resumes it (a :class:`seqcast.storage.backups.TrainingBackup`,
    whose ``folder`` Keras's BackupAndRestore writes to); ``callbacks``: extra Keras callbacks, called after the
    backup of each epoch is written.
    """
    import keras

    variant = get_variant(params.variant)
    n_steps, horizon = params.n_steps, params.effective_horizon
    keras.utils.set_random_seed(params.seed)
    x_train, y_train = fitting_pairs(variant, train_windows, n_steps, horizon, params.window_norm)
    validation = fitting_pairs(variant, valid_windows, n_steps, horizon, params.window_norm)
    return _fit(params, logger, backup, callbacks, validation, x=x_train, y=y_train, batch_size=params.batch_size)


def streaming_sampler(params: ForecastParams, panel: Panel) -> tuple[WindowSampler, tuple[np.ndarray, np.ndarray]]:
    """The sampler of training batches from ``panel`` and the fixed validation pairs, both in the frame of
    ``params.window_norm``.

    Training windows end before each series' validation part; validation windows have their targets in it (their
    inputs may reach back into the training part), as the stored splits' windows do. An epoch is
    ``params.steps_per_epoch`` batches, or fewer when that many would draw more windows than the panel holds.
    """
    variant = get_variant(params.variant)
    n_steps, horizon = params.n_steps, params.effective_horizon
    width = n_steps + horizon

    def pairs(windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return fitting_pairs(variant, windows, n_steps, horizon, params.window_norm)

    ranges = window_ranges(panel.train_ends, n_steps, horizon)
    # a panel of few windows gets epochs of as many windows as it holds, so early stopping checks it as often as
    # it would on every stored window
    steps = max(1, min(params.steps_per_epoch, math.ceil(ranges.total / params.batch_size)))
    sampler = WindowSampler(panel, ranges, width, pairs, params.batch_size, steps, params.seed)
    valid_ranges = window_ranges(panel.valid_ends, n_steps, horizon, first_target=panel.train_ends)
    if valid_ranges.total == 0:
        raise ValueError(f"no series holds a complete validation window of {width} steps")
    return sampler, pairs(fixed_sample(panel, valid_ranges, width, params.seed))


def train_streaming(params: ForecastParams, panel: Panel, logger: logging.Logger, backup=None,
                    callbacks: list | tuple = ()) -> TrainResult:
    """Fit the variant on windows drawn per batch from the series of ``panel`` (see :mod:`seqcast.training.windows`).

    Each epoch is at most ``params.steps_per_epoch`` batches drawn at random from every training window of every
    series (see :func:`streaming_sampler`), and early stopping watches a validation sample drawn once, so an epoch
    costs the same memory and time whatever the number of series. ``backup`` and ``callbacks`` as for
    :func:`train`; a resumed fit draws the batches the interrupted one would have drawn.
    """
    import keras

    keras.utils.set_random_seed(params.seed)
    sampler, validation = streaming_sampler(params, panel)
    batches, epoch_callback = keras_dataset(sampler)
    return _fit(params, logger, backup, callbacks, validation, epoch_callback=epoch_callback, x=batches)


def _fit(params: ForecastParams, logger: logging.Logger, backup, callbacks: list | tuple,
         validation: tuple[np.ndarray, np.ndarray], epoch_callback=None, **data) -> TrainResult:
    """Build and compile the variant, fit it on ``data`` (``fit``'s x, y, batch_size) and return the result."""
    import keras

    from seqcast.models.layers import last_time_step_mse

    variant = get_variant(params.variant)
    n_steps, horizon = params.n_steps, params.effective_horizon
    input_steps = params.input_steps or n_steps
    model = build_model(variant.name, input_steps, horizon, **params.hyperparameters())
    if input_steps < n_steps:
        model = last_steps(model, n_steps, input_steps)
    fitted = fixed_length(model, n_steps)
    sequence = variant.target in ("sequence", "strided")
    fitted.compile(optimizer=keras.optimizers.Nadam(learning_rate=params.learning_rate), loss=params.loss,
                   metrics=[last_time_step_mse] if sequence else [], jit_compile=params.jit_compile,
                   steps_per_execution=params.steps_per_execution)
    progress = EpochLogger(logger, variant.name, params.epochs, backup)
    extra_callbacks = list(callbacks)
    # the sampler learns the epoch before its first batch; then the guard, so no non-finite epoch is journaled or
    # backed up; then the journal, the backup, early stopping
    callbacks = [*([epoch_callback] if epoch_callback is not None else []), divergence_guard(variant.name),
                 progress.callback]
    if backup is not None:
        callbacks.append(keras.callbacks.BackupAndRestore(str(backup.folder), delete_checkpoint=True))
    callbacks += [early_stopping(params.patience, backup, progress), *extra_callbacks]
    started = time.perf_counter()
    # validation in batches of 2048: the same mean loss, far fewer compiled calls per epoch than batches of 32
    fitted.fit(**data, epochs=params.epochs, validation_data=validation, validation_batch_size=PREDICT_BATCH_SIZE,
               callbacks=callbacks, verbose=0)
    train_seconds = time.perf_counter() - started

    history = [{
        "epoch": r["epoch"], "loss": r["loss"], "val_loss": r["val_loss"],
        "last_time_step_mse": r.get("last_time_step_mse") if sequence else None,
        "val_last_time_step_mse": r.get("val_last_time_step_mse") if sequence else None,
        "seconds": r["seconds"],
    } for r in progress.rows]
    logger.info("%s trained: %d epochs in %.1f s, best val_loss %.5f", variant.name, len(history), train_seconds,
                min(r["val_loss"] for r in history))
    return TrainResult(model, len(history), train_seconds, model.count_params(), history)


def model_manifest(manifest: dict, result: TrainResult, variant: Variant) -> dict:
    """What is saved beside a trained model: ``manifest`` (run, parameters, data) plus how the training went."""
    return {**manifest, "epochs": result.epochs, "n_params": result.n_params, "train_seconds": result.train_seconds,
            "libraries": library_versions(), "input_shape": [None, 1], "target": variant.target,
            "tensorflow_threads": os.environ.get("TF_NUM_INTRAOP_THREADS"), "history": result.history}


def same_training(saved: dict | None, manifest: dict) -> bool:
    """Whether a saved model's manifest is this very training's (same run, parameters and data), finished.

    A flow run retried after its training finished (say evaluation failed) reuses that model instead of training
    again; a manifest with a history belongs to a finished training.
    """
    if saved is None or "history" not in saved:
        return False
    expected = json.loads(json.dumps(manifest, default=str))  # as the saved one went through JSON
    return all(saved.get(key) == value for key, value in expected.items())


def forecast(variant: Variant, model, x: np.ndarray, horizon: int, window_norm: str = "none") -> np.ndarray:
    """Forecast the ``horizon`` values after the last input step: inputs (n, steps, 1) -> (n, horizon).

    The model sees the inputs in the frame of ``window_norm`` (the one it was trained in); its outputs are mapped
    back to the units of ``x``. A baseline repeats the last value, the same in any frame, so it skips the frame
    and its forecast stays exactly the last input.
    """
    if variant.target == "naive":
        return naive_forecast(x, horizon)
    if variant.target == "iterative":
        if window_norm != "none":
            raise ValueError(f"window_norm {window_norm!r} does not apply to iterative variants")
        return iterate(model, x, horizon)
    x_model, ref, scale = normalise(x, window_norm)
    pred = model.predict(x_model, batch_size=PREDICT_BATCH_SIZE, verbose=0)
    if variant.target in ("sequence", "strided"):
        pred = pred[:, -1, :]
    return denormalise(np.asarray(pred, dtype=np.float32)[:, :horizon], ref, scale)


def iterate(one_step_model, x: np.ndarray, horizon: int) -> np.ndarray:
    """Apply a one-step model ``horizon`` times, appending each forecast to the inputs (the chapter's way)."""
    x = np.asarray(x, dtype=np.float32)
    for _ in range(horizon):
        step = one_step_model.predict(x, batch_size=PREDICT_BATCH_SIZE, verbose=0)[:, np.newaxis, :1]
        x = np.concatenate([x, step.astype(np.float32)], axis=1)
    return x[:, -horizon:, 0]

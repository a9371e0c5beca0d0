"""Model tier: every builder's shapes and parameter counts, targets, and .keras reload in a fresh process."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from seqcast.data import generate_time_series, sequence_targets
from seqcast.models import MULTI_STEP, ONE_STEP, REGISTRY, build_model, get_variant
from seqcast.training import training_targets
from tests.conftest import REPO_ROOT

# Parameter counts of the plain-Keras reference models (../shared/ANCHORS.md, reference/homl_reference.py).
REFERENCE_PARAMS = {"linear": 51, "simple_rnn": 3, "deep_rnn": 1282, "deep_rnn_dense": 1281, "linear_10": 510,
                    "seq2vec_rnn": 1470, "seq2seq_rnn": 1470, "ln_rnn": 1550, "lstm": 5250, "gru": 4110,
                    "conv_gru": 5350, "wavenet": 6010}
TRAINABLE = [name for name, v in REGISTRY.items() if v.trainable]


def test_registry_covers_the_chapter():
    assert ONE_STEP == ["naive", "linear", "simple_rnn", "deep_rnn", "deep_rnn_dense"]
    assert set(MULTI_STEP) == {"naive_10", "linear_10", "iterative_10", "seq2vec_rnn", "seq2seq_rnn", "ln_rnn",
                               "lstm", "gru", "conv_gru", "wavenet"}
    assert set(TRAINABLE) == set(REFERENCE_PARAMS)


def test_unknown_variant_lists_valid_names():
    with pytest.raises(ValueError, match="unknown variant 'transformer'; valid variants: naive, linear"):
        get_variant("transformer")


@pytest.mark.parametrize("name", TRAINABLE)
def test_builder_shapes_and_parameter_count(name):
    variant = REGISTRY[name]
    model = build_model(name, n_steps=50, horizon=variant.horizon)
    assert model.count_params() == REFERENCE_PARAMS[name]
    out = model(np.zeros((4, 50, 1), np.float32))
    expected = {"vector": (4, variant.horizon), "sequence": (4, 50, variant.horizon),
                "strided": (4, 24, variant.horizon)}[variant.target]
    assert tuple(out.shape) == expected


def test_units_and_horizon_are_arguments():
    model = build_model("lstm", n_steps=30, horizon=5, units=8)
    assert tuple(model(np.zeros((2, 30, 1), np.float32)).shape) == (2, 30, 5)
    assert model.count_params() == 4 * (8 * (1 + 8 + 1)) + 4 * (8 * (8 + 8 + 1)) + 8 * 5 + 5


def test_a_hyperparameter_a_variant_does_not_use_is_refused():
    for name, variant in REGISTRY.items():
        for unused in {"units", "dropout", "recurrent_dropout"} - set(variant.hyperparameters):
            if variant.trainable:
                with pytest.raises(ValueError, match=f"variant '{name}' does not use {unused}"):
                    build_model(name, 50, variant.horizon, **{unused: 3 if unused == "units" else 0.1})
    # every name a variant lists reaches its builder: a changed value changes the model
    assert build_model("ln_rnn", 50, 10, units=8).count_params() != build_model("ln_rnn", 50, 10).count_params()


def test_strided_targets_match_conv_output_steps():
    windows = generate_time_series(8, 60, seed=1)[..., 0]
    y = training_targets(get_variant("conv_gru"), windows, 50, 10)
    # Output step j of Conv1D(kernel 4, strides 2, valid) ends at input 2j + 3: the chapter's Y[:, 3::2].
    assert y.shape == (8, 24, 10)
    for j in range(24):
        assert np.array_equal(y[:, j], windows[:, 2 * j + 3 + 1:2 * j + 3 + 11])
    assert np.array_equal(y, sequence_targets(windows, 50, 10)[:, 3::2])
    model = build_model("conv_gru", 50, 10)
    assert tuple(model(windows[:, :50, None]).shape) == y.shape


def test_vector_targets_are_the_future_values():
    windows = generate_time_series(5, 60, seed=2)[..., 0]
    assert np.array_equal(training_targets(get_variant("seq2vec_rnn"), windows, 50, 10), windows[:, 50:])


def test_every_model_reloads_in_a_fresh_process(tmp_path):
    import seqcast.layers  # noqa: F401

    x = generate_time_series(6, 50, seed=5)
    expected = {}
    for name in TRAINABLE:
        model = build_model(name, 50, REGISTRY[name].horizon)
        model.compile(loss="mse", metrics=[seqcast.layers.last_time_step_mse])
        model.save(tmp_path / f"{name}.keras")
        expected[name] = np.asarray(model.predict(x, verbose=0)).tolist()
    np.save(tmp_path / "x.npy", x)
    script = (
        "import json, sys, numpy as np\n"
        "from pathlib import Path\n"
        "from seqcast.layers import CUSTOM_OBJECTS\n"
        "from storage import Store\n"
        "d = sys.argv[1]; x = np.load(d + '/x.npy'); out = {}; models = Store(Path(d)).models\n"
        f"for name in {TRAINABLE!r}:\n"
        "    out[name] = np.asarray(models.load(f'{name}.keras', CUSTOM_OBJECTS).predict(x, verbose=0)).tolist()\n"
        "print(json.dumps(out))\n"
    )
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True,
                          timeout=300, cwd=REPO_ROOT, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert done.returncode == 0, done.stderr[-2000:]
    reloaded = json.loads(done.stdout.strip().splitlines()[-1])
    for name in TRAINABLE:
        np.testing.assert_allclose(reloaded[name], expected[name], rtol=1e-5, atol=1e-6, err_msg=name)


def test_fixed_length_training_saves_the_best_weights_behind_a_variable_length_input(tmp_path):
    """Training fits a fixed-length twin; the saved model shares its (restored best) weights and takes any length."""
    import logging

    from seqcast.layers import CUSTOM_OBJECTS
    from seqcast.params import ForecastParams
    from seqcast.training import model_manifest, same_training, train
    from storage import Store

    params = ForecastParams(variant="deep_rnn_dense", n_series=300, n_train=200, n_valid=100, n_test=0, epochs=6,
                            patience=6, learning_rate=0.05)  # a rate this high makes val_loss rise and fall
    windows = generate_time_series(300, 51, seed=3)[..., 0]
    result = train(params, windows[:200], windows[200:], logging.getLogger("test"))
    val_losses = [row["val_loss"] for row in result.history]
    assert len(val_losses) == 6 and int(np.argmin(val_losses)) < 5  # the last epoch is not the best one

    models = Store(tmp_path).models
    key = {"variant": params.variant}
    model_path = models.save("run-1", result.model, model_manifest(key, result, REGISTRY[params.variant]))
    assert model_path == "models/run-1/model.keras"
    model = models.load(model_path, CUSTOM_OBJECTS)
    assert tuple(model.inputs[0].shape) == (None, None, 1)
    valid = windows[200:]
    predicted = model.predict(valid[:, :50, None], verbose=0)
    assert np.mean((predicted[:, 0] - valid[:, 50]) ** 2) == pytest.approx(min(val_losses), rel=1e-4)
    longer = generate_time_series(4, 57, seed=4)  # iterative forecasting feeds back longer inputs
    assert model.predict(longer, verbose=0).shape == (4, 1)

    # a retry of the same run finds this training finished; any other run, parameters or data train anew
    saved = models.saved_manifest("run-1")
    assert same_training(saved, key) and saved["history"] == result.history
    assert (saved["epochs"], saved["train_seconds"]) == (result.epochs, result.train_seconds)
    assert not same_training(saved, {**key, "params": params.model_dump()})
    assert not same_training(saved, {"variant": "linear"})
    assert models.saved_manifest("run-2") is None
    (tmp_path / model_path).unlink()  # a manifest without its model is no finished training
    assert models.saved_manifest("run-1") is None


def test_a_resumed_training_restores_the_best_weights_of_the_whole_run(tmp_path):
    """After a crash, early stopping resumes with its best weights and patience, not from scratch."""
    import logging
    import shutil

    import keras

    from seqcast.params import ForecastParams
    from seqcast.training import train

    params = ForecastParams(variant="deep_rnn_dense", n_series=300, n_train=200, n_valid=100, n_test=0, epochs=5,
                            patience=5, learning_rate=0.05, jit_compile=False)  # val_loss rises and falls
    windows = generate_time_series(300, 51, seed=3)[..., 0]
    folder, snapshot = tmp_path / "model", tmp_path / "state-after-3"

    class CrashBeforeEpoch5(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 3:  # keep early stopping's state after epoch 3, for the second case below
                shutil.copytree(folder / "backup", snapshot, ignore=lambda _, names: [
                    n for n in names if not n.startswith(("early_stopping", "best-"))])
            if epoch == 4:
                raise RuntimeError("crash")

    def fit(model_dir, crash=False):
        return train(params, windows[:200], windows[200:], logging.getLogger("test"), backup_dir=model_dir / "backup",
                     callbacks=[CrashBeforeEpoch5()] if crash else [])

    def valid_mse(result):
        predicted = result.model.predict(windows[200:, :50, None], verbose=0)
        return float(np.mean((predicted[:, 0] - windows[200:, 50]) ** 2))

    with pytest.raises(RuntimeError, match="crash"):
        fit(folder, crash=True)
    shutil.copytree(folder / "backup", tmp_path / "crashed-backup")
    resumed = fit(folder)
    val_losses = [row["val_loss"] for row in resumed.history]
    assert len(val_losses) == 5 and int(np.argmin(val_losses)) == 3  # the best epoch came before the crash ...
    assert val_losses[4] > val_losses[3]  # ... and the one epoch after it is worse
    assert valid_mse(resumed) == pytest.approx(val_losses[3], rel=1e-4)  # yet the model is the run's best

    # A crash between the backup's write and early stopping's leaves its state one epoch behind the backup:
    # that epoch is scored from the journal against the restored weights.
    lagging = tmp_path / "lagging"
    shutil.copytree(tmp_path / "crashed-backup", lagging / "backup")
    for stale in (lagging / "backup").glob("best-*.weights.npz"):
        stale.unlink()
    for state in snapshot.iterdir():
        shutil.copy(state, lagging / "backup" / state.name)
    assert json.loads((lagging / "backup" / "early_stopping.json").read_text())["epochs"] == 3
    assert valid_mse(fit(lagging)) == pytest.approx(val_losses[3], rel=1e-4)

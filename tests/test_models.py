"""Model tier: every builder's shapes and parameter counts, targets, and .keras reload in a fresh process."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from seqcast.data.synthetic import generate_time_series, sequence_targets
from seqcast.models.registry import MULTI_STEP, ONE_STEP, REGISTRY, build_model, get_variant
from seqcast.training.fit import training_targets
from tests.conftest import REPO_ROOT

# Parameter counts of the plain-Keras reference models (../shared/ANCHORS.md, reference/homl_reference.py).
REFERENCE_PARAMS = {"linear": 51, "simple_rnn": 3, "deep_rnn": 1282, "deep_rnn_dense": 1281, "linear_10": 510,
                    "seq2vec_rnn": 1470, "seq2seq_rnn": 1470, "ln_rnn": 1550, "lstm": 5250, "gru": 4110,
                    "conv_gru": 5350, "wavenet": 6010}
TRAINABLE = [name for name, v in REGISTRY.items() if v.trainable]
BEYOND_THE_CHAPTER = {"nbeats_generic", "nbeats_interpretable", "mlp"}
ENSEMBLES = {"ensemble_mlp", "ensemble_mix"}


def nbeats_params(n_steps: int, horizon: int, units: int) -> dict[str, int]:
    """N-BEATS's weight counts, worked out from the paper's block: 4 Dense(units) layers with biases, projections
    to the coefficients without bias, and (generic only) a learned linear basis with bias.

    The last block's backcast feeds nothing, so the model leaves its projection and basis out.
    """
    fc = (n_steps * units + units) + 3 * (units * units + units)
    backcast = units * n_steps + (n_steps * n_steps + n_steps)  # theta: one coefficient per value; basis V theta + b
    forecast = units * horizon + (horizon * horizon + horizon)
    generic = 4 * (fc + backcast + forecast) - backcast  # 2 stacks x 2 blocks, each with weights of its own
    # one block's weights per stack (3 blocks share them); the bases are fixed: degree-3 polynomial (4 coefficients),
    # Fourier with 1 + 2 * floor(horizon / 2 - 1) coefficients
    fourier = 1 + 2 * max(0, horizon // 2 - 1)
    interpretable = (fc + 2 * units * 4) + (fc + 2 * units * fourier)
    return {"nbeats_generic": generic, "nbeats_interpretable": interpretable}


# mlp: 4 Dense(256, relu) on the flattened 50 inputs, then Dense(10)
PARAMS = {**REFERENCE_PARAMS, **nbeats_params(50, 10, 64), "mlp": (50 * 256 + 256) + 3 * (256 * 256 + 256) + 2570}


def test_registry_covers_the_chapter():
    assert ONE_STEP == ["naive", "linear", "simple_rnn", "deep_rnn", "deep_rnn_dense"]
    assert set(MULTI_STEP) == {"naive_10", "linear_10", "iterative_10", "seq2vec_rnn", "seq2seq_rnn", "ln_rnn",
                               "lstm", "gru", "conv_gru", "wavenet"} | BEYOND_THE_CHAPTER | ENSEMBLES
    assert set(TRAINABLE) == set(REFERENCE_PARAMS) | BEYOND_THE_CHAPTER
    stats = {name for name, v in REGISTRY.items() if v.family == "stats"}
    assert stats == {"stats_naive", "stats_seasonal_naive", "stats_naive2", "stats_theta", "stats_ets"}
    assert {name for name, v in REGISTRY.items() if v.book_valid_mse is None} == \
        BEYOND_THE_CHAPTER | stats | ENSEMBLES | {"ensemble_hybrid"}


def test_unknown_variant_lists_valid_names():
    with pytest.raises(ValueError, match="unknown variant 'transformer'; valid variants: naive, linear"):
        get_variant("transformer")


@pytest.mark.parametrize("name", TRAINABLE)
def test_builder_shapes_and_parameter_count(name):
    variant = REGISTRY[name]
    model = build_model(name, n_steps=50, horizon=variant.horizon)
    assert model.count_params() == PARAMS[name]
    out = model(np.zeros((4, 50, 1), np.float32))
    expected = {"vector": (4, variant.horizon), "sequence": (4, 50, variant.horizon),
                "strided": (4, 24, variant.horizon)}[variant.target]
    assert tuple(out.shape) == expected


def test_units_and_horizon_are_arguments():
    model = build_model("lstm", n_steps=30, horizon=5, units=8)
    assert tuple(model(np.zeros((2, 30, 1), np.float32)).shape) == (2, 30, 5)
    assert model.count_params() == 4 * (8 * (1 + 8 + 1)) + 4 * (8 * (8 + 8 + 1)) + 8 * 5 + 5


@pytest.mark.parametrize("name", ["nbeats_generic", "nbeats_interpretable"])
def test_nbeats_takes_any_window_horizon_and_width(name):
    model = build_model(name, n_steps=20, horizon=6, units=8)
    assert tuple(model(np.zeros((3, 20, 1), np.float32)).shape) == (3, 6)
    assert model.count_params() == nbeats_params(20, 6, 8)[name]
    assert build_model(name, n_steps=20, horizon=1, units=8).count_params() == nbeats_params(20, 1, 8)[name]


def _sub_outputs(model, names: list[str], x: np.ndarray) -> dict[str, np.ndarray]:
    """The outputs of the named layers of ``model`` for inputs ``x`` (n, n_steps, 1), by name."""
    import keras

    probe = keras.Model(model.inputs[0], [model.get_layer(name).output for name in names])
    return {name: np.asarray(out) for name, out in zip(names, probe(x), strict=True)}


def _apply_block(model, prefix: str, residual: np.ndarray, part: str) -> np.ndarray:
    """Run the block whose layers are named ``{prefix}_...`` on ``residual`` (n, n_steps): its backcast or forecast."""
    h = residual
    for i in range(1, 5):
        h = model.get_layer(f"{prefix}_fc{i}")(h)
    return np.asarray(model.get_layer(f"{prefix}_basis_{part}")(model.get_layer(f"{prefix}_theta_{part}")(h)))


@pytest.mark.parametrize("name, stacks", [
    ("nbeats_generic", [(f"stack{s}", [f"stack{s}_block1", f"stack{s}_block2"]) for s in (1, 2)]),
    ("nbeats_interpretable", [("trend", ["trend"] * 3), ("seasonality", ["seasonality"] * 3)]),  # shared weights
])
def test_nbeats_is_doubly_residual(name, stacks):
    """Block k+1 sees block k's input minus block k's backcast; the forecast is the sum of the blocks' forecasts."""
    x = generate_time_series(5, 30, seed=6)
    model = build_model(name, n_steps=30, horizon=6, units=16)
    blocks = [(stack, k, prefix) for stack, prefixes in stacks for k, prefix in enumerate(prefixes, 1)]
    names = ["window", "forecast", *(f"{stack}_forecast" for stack, _ in stacks),
             *(f"{stack}_block{k}_forecast" for stack, k, _ in blocks),
             *(f"{stack}_block{k}_backcast" for stack, k, _ in blocks[:-1])]  # the last backcast feeds nothing
    out = _sub_outputs(model, names, x)
    np.testing.assert_allclose(out["window"], x[..., 0])

    residual, total = x[..., 0], 0
    for i, (stack, k, prefix) in enumerate(blocks):
        forecast = out[f"{stack}_block{k}_forecast"]
        assert np.abs(forecast).max() > 1e-3  # every block contributes
        np.testing.assert_allclose(forecast, _apply_block(model, prefix, residual, "forecast"), rtol=1e-4, atol=1e-5)
        total = total + forecast
        if i < len(blocks) - 1:
            backcast = out[f"{stack}_block{k}_backcast"]
            np.testing.assert_allclose(backcast, _apply_block(model, prefix, residual, "backcast"), rtol=1e-4,
                                       atol=1e-5)
            residual = residual - backcast
    for stack, _ in stacks:
        stack_sum = sum(out[f"{stack}_block{k}_forecast"] for s, k, _ in blocks if s == stack)
        np.testing.assert_allclose(out[f"{stack}_forecast"], stack_sum, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out["forecast"], total, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(model(x)), total, rtol=1e-5, atol=1e-6)


def _relative_residual(basis: np.ndarray, values: np.ndarray) -> float:
    """How far ``values`` (n, length) lie from the span of ``basis`` (length, m): least-squares residual / norm."""
    coefficients, *_ = np.linalg.lstsq(basis, values.T, rcond=None)
    return float(np.linalg.norm(basis @ coefficients - values.T) / np.linalg.norm(values))


def test_nbeats_trend_blocks_forecast_cubic_polynomials():
    n_steps, horizon = 40, 10
    model = build_model("nbeats_interpretable", n_steps=n_steps, horizon=horizon, units=16)
    names = [f"trend_block{k}_{part}" for k in (1, 2, 3) for part in ("forecast", "backcast")]
    out = _sub_outputs(model, names, generate_time_series(8, n_steps, seed=7))
    for length, part in ((horizon, "forecast"), (n_steps, "backcast")):
        t = np.arange(length) / length  # the paper's normalised time
        for k in (1, 2, 3):
            values = out[f"trend_block{k}_{part}"]
            assert _relative_residual(np.vander(t, 4), values) < 1e-5  # a cubic in t ...
            assert _relative_residual(np.vander(t, 3), values) > 1e-3  # ... that no quadratic fits


def test_nbeats_seasonality_blocks_forecast_the_papers_harmonics():
    """With horizon 10: harmonics k = 1..4 (floor(10 / 2 - 1)) of period 10 and a constant, over the forecast and
    the backcast alike."""
    n_steps, horizon = 40, 10
    model = build_model("nbeats_interpretable", n_steps=n_steps, horizon=horizon, units=16)
    names = [*(f"seasonality_block{k}_forecast" for k in (1, 2, 3)),
             *(f"seasonality_block{k}_backcast" for k in (1, 2))]  # the last block's backcast feeds nothing
    out = _sub_outputs(model, names, generate_time_series(8, n_steps, seed=8))

    def harmonics(length: int, ks) -> np.ndarray:
        t = np.arange(length) / horizon
        return np.column_stack([np.ones(length)] + [f(2 * np.pi * k * t) for k in ks for f in (np.cos, np.sin)])

    for k in (1, 2, 3):
        forecast = out[f"seasonality_block{k}_forecast"]
        assert _relative_residual(harmonics(horizon, range(1, 5)), forecast) < 1e-5
        # the 5th harmonic (period 2, alternating signs) is left out: the forecast has no part along it
        assert np.abs(forecast @ (-1.0) ** np.arange(horizon)).max() < 1e-5 * np.abs(forecast).sum(axis=1).max()
    for k in (1, 2):
        backcast = out[f"seasonality_block{k}_backcast"]
        # over 40 backcast steps these 9 functions span a small space: a strong check of the frequencies
        assert _relative_residual(harmonics(n_steps, range(1, 5)), backcast) < 1e-5
        assert _relative_residual(harmonics(n_steps, range(1, 4)), backcast) > 1e-3


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


@pytest.mark.slow
def test_every_model_reloads_in_a_fresh_process(tmp_path):
    import seqcast.models.layers  # noqa: F401

    x = generate_time_series(6, 50, seed=5)
    expected = {}
    for name in TRAINABLE:
        model = build_model(name, 50, REGISTRY[name].horizon)
        model.compile(loss="mse", metrics=[seqcast.models.layers.last_time_step_mse])
        model.save(tmp_path / f"{name}.keras")
        expected[name] = np.asarray(model.predict(x, verbose=0)).tolist()
    np.save(tmp_path / "x.npy", x)
    script = (
        "import json, sys, numpy as np\n"
        "from pathlib import Path\n"
        "from seqcast.models.layers import CUSTOM_OBJECTS\n"
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


@pytest.mark.integration
def test_fixed_length_training_saves_the_best_weights_behind_a_variable_length_input(tmp_path):
    """Training fits a fixed-length twin; the saved model shares its (restored best) weights and takes any length."""
    import logging

    from seqcast.config.params import ForecastParams
    from seqcast.models.layers import CUSTOM_OBJECTS
    from seqcast.storage import Store
    from seqcast.training.fit import model_manifest, same_training, train

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


@pytest.mark.integration
def test_a_resumed_training_restores_the_best_weights_of_the_whole_run(tmp_path):
    """After a crash, early stopping resumes with its best weights and patience, not from scratch."""
    import logging
    import shutil

    import keras

    from seqcast.config.params import ForecastParams
    from seqcast.storage.backups import TrainingBackup
    from seqcast.training.fit import train

    params = ForecastParams(variant="deep_rnn_dense", n_series=300, n_train=200, n_valid=100, n_test=0, epochs=5,
                            patience=5, learning_rate=0.05, jit_compile=False)
    windows = generate_time_series(300, 51, seed=3)[..., 0]
    folder, snapshot = tmp_path / "model", tmp_path / "state-after-3"

    class CrashBeforeEpoch5(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 3:  # keep early stopping's state after epoch 3, for the second case below
                shutil.copytree(folder / "backup", snapshot, ignore=lambda _, names: [
                    n for n in names if not n.startswith(("early_stopping", "best-"))])
            if epoch == 4:
                raise RuntimeError("crash")

    class Steer(keras.callbacks.Callback):
        """Leave the ``ruined`` epochs with weights of all ones (a saturated RNN, forecasts far off every series)
        and start epoch ``fresh`` from the initial weights, so the one epoch trained normally is the best, whatever
        trajectory training takes on this CPU."""

        def __init__(self, ruined, fresh=None):
            super().__init__()
            self.ruined, self.fresh, self.ruin = ruined, fresh, False

        def on_train_begin(self, logs=None):
            self.initial = self.model.get_weights()

        def on_epoch_begin(self, epoch, logs=None):
            self.ruin = epoch in self.ruined
            if epoch == self.fresh:
                self.model.set_weights(self.initial)

        def on_train_batch_end(self, batch, logs=None):
            if self.ruin:
                self.model.set_weights([np.ones_like(w) for w in self.model.get_weights()])

    def fit(model_dir, crash=False):
        return train(params, windows[:200], windows[200:], logging.getLogger("test"),
                     backup=TrainingBackup(model_dir / "backup"),
                     callbacks=[Steer({0, 1, 2}, fresh=3), CrashBeforeEpoch5()] if crash else [Steer({4})])

    def valid_mse(result):
        predicted = result.model.predict(windows[200:, :50, None], verbose=0)
        return float(np.mean((predicted[:, 0] - windows[200:, 50]) ** 2))

    with pytest.raises(RuntimeError, match="crash"):
        fit(folder, crash=True)
    shutil.copytree(folder / "backup", tmp_path / "crashed-backup")
    resumed = fit(folder)
    val_losses = [row["val_loss"] for row in resumed.history]
    best = val_losses[3]
    assert len(val_losses) == 5 and all(loss > 10 * best for loss in val_losses[:3] + val_losses[4:])
    assert valid_mse(resumed) == pytest.approx(best, rel=1e-4)  # the best epoch came before the crash, not the last

    # A crash between the backup's write and early stopping's leaves its state one epoch behind the backup:
    # that epoch is scored from the journal against the restored weights.
    lagging = tmp_path / "lagging"
    shutil.copytree(tmp_path / "crashed-backup", lagging / "backup")
    for stale in (lagging / "backup").glob("best-*.weights.npz"):
        stale.unlink()
    for state in snapshot.iterdir():
        shutil.copy(state, lagging / "backup" / state.name)
    assert json.loads((lagging / "backup" / "early_stopping.json").read_text())["epochs"] == 3
    assert valid_mse(fit(lagging)) == pytest.approx(best, rel=1e-4)

"""Window-level normalisation: exact round trips, the frame of every target kind, and series that trend away."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from seqcast.config.params import INGESTED_WINDOW_NORM, ForecastParams
from seqcast.data.ingest import IngestParams
from seqcast.data.normalise import SCALE_FLOOR, denormalise, normalise, normalise_like
from seqcast.data.scaling import Scaler
from seqcast.evaluation.run import evaluate
from seqcast.models.registry import get_variant
from seqcast.tasks.ingest import prepare
from seqcast.training.fit import fitting_pairs, forecast, train, training_targets
from tests.series_files import trending_series, write

TREND_WINDOW = {"n_steps": 20, "horizon": 5}


def windows(n: int = 6, width: int = 15, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.uniform(-50, 50, (n, 1)) + np.cumsum(rng.normal(0, 2, (n, width)), axis=1)).astype(np.float32)


@pytest.mark.parametrize("mode", ["last", "mean"])
def test_normalise_then_denormalise_gives_the_values_back(mode):
    w = windows()
    x = w[:, :10, np.newaxis]
    x_n, ref, scale = normalise(x, mode)
    assert x_n.shape == (6, 10, 1) and x_n.dtype == np.float32 and ref.shape == scale.shape == (6, 1)
    expected_ref = x[:, -1, :] if mode == "last" else x[:, :, 0].astype(np.float64).mean(axis=1, keepdims=True)
    np.testing.assert_allclose(ref, expected_ref, rtol=1e-12)
    np.testing.assert_allclose(scale, x[:, :, 0].astype(np.float64).std(axis=1, keepdims=True), rtol=1e-12)
    # the window seen in its frame: reference at 0 (the last value for `last`), unit standard deviation
    assert np.allclose(x_n[:, :, 0].std(axis=1), 1, atol=1e-5)
    assert np.allclose(x_n[:, -1, 0] if mode == "last" else x_n[:, :, 0].mean(axis=1), 0, atol=1e-5)
    np.testing.assert_allclose(denormalise(x_n[:, :, 0], ref, scale), x[:, :, 0], rtol=1e-6, atol=1e-5)
    # targets of both shapes go into the window's frame and come back
    for y in (w[:, 10:], np.stack([w[:, 1:11], w[:, 2:12]], axis=-1)):  # (n, horizon), (n, steps, horizon)
        y_n = normalise_like(y, ref, scale)
        assert y_n.shape == y.shape and y_n.dtype == np.float32
        np.testing.assert_allclose(y_n, (y - _col(ref, y)) / _col(scale, y), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(denormalise(y_n, ref, scale), y, rtol=1e-6, atol=1e-5)


def _col(column, y):
    return column.reshape(len(column), *([1] * (y.ndim - 1)))


def test_none_leaves_every_value_as_it_is_and_unknown_modes_are_refused():
    x = windows()[:, :, np.newaxis]
    x_n, ref, scale = normalise(x, "none")
    assert x_n is x and not ref.any() and (scale == 1).all()
    y = windows(seed=1)
    assert np.array_equal(denormalise(y, ref, scale), y) and np.array_equal(normalise_like(y, ref, scale), y)
    with pytest.raises(ValueError, match="unknown window_norm 'median'; window norms: none, last, mean"):
        normalise(x, "median")


def test_a_flat_window_is_divided_by_the_floor_not_by_zero():
    x = np.full((2, 8, 1), 7.0, dtype=np.float32)
    x[1, :, 0] += np.linspace(0, 1e-4, 8)  # all but flat
    x_n, ref, scale = normalise(x, "mean")
    assert np.isfinite(x_n).all() and (scale == SCALE_FLOOR).all()
    y = np.array([[8.0], [7.0]], dtype=np.float32)
    np.testing.assert_allclose(normalise_like(y, ref, scale)[0], [1 / SCALE_FLOOR], rtol=1e-6)
    np.testing.assert_allclose(denormalise(normalise_like(y, ref, scale), ref, scale), y, rtol=1e-6)


@pytest.mark.parametrize("variant", ["linear_10", "lstm", "conv_gru"])
def test_every_target_kind_is_fitted_in_the_input_windows_frame(variant):
    """Vector, sequence and strided targets: one reference per window (its last input) for every step's targets."""
    kind, w = get_variant(variant), windows(width=22)
    x, y = fitting_pairs(kind, w, 12, 10, "last")
    x_raw, ref, scale = w[:, :12, np.newaxis], w[:, 11:12].astype(np.float64), w[:, :12].std(axis=1, keepdims=True)
    np.testing.assert_allclose(x, (x_raw - ref[:, :, None]) / scale[:, :, None], rtol=1e-5, atol=1e-6)
    targets = training_targets(kind, w, 12, 10)
    assert y.shape == targets.shape
    np.testing.assert_allclose(denormalise(y, ref, scale), targets, rtol=1e-5, atol=1e-4)
    x_none, y_none = fitting_pairs(kind, w, 12, 10, "none")
    assert np.array_equal(y_none, targets) and np.array_equal(x_none, x_raw)


def test_a_model_that_forecasts_zero_in_the_last_frame_continues_the_last_value():
    """A linear series: zero in the `last` frame is the last input again, in the units the windows came in."""
    import keras

    kind = get_variant("linear_10")
    model = keras.Sequential([keras.Input((14, 1)), keras.layers.Flatten(),
                              keras.layers.Dense(7, kernel_initializer="zeros", bias_initializer="zeros")])
    x = (3.0 + 0.5 * np.arange(14, dtype=np.float32) * np.arange(1, 5, dtype=np.float32)[:, None])[..., None]
    got = forecast(kind, model, x, 7, "last")
    np.testing.assert_array_equal(got, np.repeat(x[:, -1, :], 7, axis=1))
    assert not np.allclose(forecast(kind, model, x, 7, "mean"), got)  # mean: the window's mean instead
    np.testing.assert_allclose(forecast(kind, model, x, 7, "mean"), np.repeat(x.mean(axis=1), 7, axis=1), rtol=1e-6)


def test_baselines_score_exactly_the_same_in_every_frame():
    w = windows(n=40, width=17)
    splits = {"valid": (w[:20], None), "test": (w[20:], None)}
    figures = [evaluate(get_variant("naive_10"), None, 12, 5, Scaler(), splits, norm).metrics
               for norm in ("none", "last", "mean")]
    assert figures[0] == figures[1] == figures[2]


def test_the_default_is_resolved_once_and_recorded():
    manifest = {"spec": {"kind": "ingested", "n_steps": 20, "horizon": 5},
                "shapes": {"train": [100, 25], "valid": [20, 25]}}
    synthetic = {**manifest, "spec": {**manifest["spec"], "kind": "synthetic"}}
    assert ForecastParams(variant="lstm").window_norm == "none"  # the book's series: as the chapter trains them
    on_dataset = ForecastParams(variant="lstm", dataset_id="ds-0123456789ab")
    assert on_dataset.window_norm is None  # not known until the dataset is
    assert on_dataset.for_dataset(manifest).window_norm == INGESTED_WINDOW_NORM
    assert on_dataset.for_dataset(synthetic).window_norm == "none"
    assert ForecastParams(variant="lstm", dataset_id="ds-0123456789ab", window_norm="mean") \
        .for_dataset(manifest).window_norm == "mean"
    assert ForecastParams(variant="naive_10", dataset_id="ds-0123456789ab").for_dataset(manifest).window_norm == "none"
    with pytest.raises(ValidationError, match="window_norm 'last' does not apply to iterative variants"):
        ForecastParams(variant="iterative_10", window_norm="last")
    with pytest.raises(ValidationError, match="window_norm"):
        ForecastParams(variant="lstm", window_norm="median")


def trending_run(variant: str, window_norm: str | None, folder: Path, seed: int = 0, epochs: int = 5,
                 units: int = 4, learning_rate: float = 0.01, data_seed: int = 0) -> dict:
    """Ingest ``trending_series`` (default per-series scaling), train ``variant`` through the core functions and
    score it: naive's and the model's test MSE in original units, and the window norm it ran with."""
    path = write(trending_series(seed=data_seed), folder / f"trend-{data_seed}.csv")
    prepared = prepare(IngestParams(source=str(path), id_column="store", time_column="day", value_column="sales",
                                    **TREND_WINDOW))
    manifest = {"spec": prepared.spec, "shapes": {p: list(w.shape) for p, w in prepared.splits.items()}}
    kind = get_variant(variant)
    options = {"units": units} if "units" in kind.hyperparameters else {}
    params = ForecastParams(variant=variant, dataset_id=prepared.dataset_id, epochs=epochs, seed=seed,
                            learning_rate=learning_rate, jit_compile=False, window_norm=window_norm,
                            **options).for_dataset(manifest)
    ids = {p: prepared.extra[p]["series_id"] for p in prepared.splits}
    model = None
    if kind.trainable:
        scaled = {p: prepared.scaler.transform(prepared.splits[p], ids[p]) for p in ("train", "valid")}
        model = train(params, scaled["train"], scaled["valid"], logging.getLogger("window_norm")).model
    evaluation = evaluate(kind, model, params.n_steps, params.effective_horizon, prepared.scaler,
                          {p: (prepared.splits[p], ids[p]) for p in ("valid", "test")}, params.window_norm)
    seen, future = prepared.splits["train"], prepared.splits["test"][:, params.n_steps:]
    above = all(future[ids["test"] == sid].min() > seen[ids["train"] == sid].max() for sid in set(ids["train"]))
    return {"window_norm": params.window_norm, "naive": evaluation.figure("test", "naive"),
            "model": evaluation.figure("test"), "test_above_train": above}


@pytest.mark.slow
def test_recurrent_and_linear_models_follow_a_trend_past_the_training_range_only_in_a_window_frame(tmp_path):
    lstm, linear = trending_run("lstm", None, tmp_path), trending_run("linear", None, tmp_path)
    assert lstm["test_above_train"]  # each series' test targets lie above all of its training values
    assert lstm["window_norm"] == linear["window_norm"] == INGESTED_WINDOW_NORM
    for run in (lstm, linear):
        assert run["model"] < run["naive"], run
    # standardised with the training statistics only, the test part is out of the range a tanh network produces
    plain = trending_run("lstm", "none", tmp_path)
    assert plain["window_norm"] == "none" and plain["model"] > 10 * plain["naive"], plain

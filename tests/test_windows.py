"""Training windows drawn per batch from a panel: reproducible, inside each series' training part, the eager path's
windows and frame, and never more than a batch in memory."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from seqcast.config.params import ForecastParams
from seqcast.data.ingest import IngestParams
from seqcast.models.registry import get_variant
from seqcast.tasks.ingest import prepare
from seqcast.tasks.train import training_panel, values_panel
from seqcast.training.fit import fitting_pairs, streaming_sampler
from seqcast.training.windows import (
    Panel,
    WindowSampler,
    empty_panel,
    fill_series,
    fixed_sample,
    series_panel,
    window_ranges,
)
from tests.series_files import COLUMNS, trending_series, write

N_STEPS, HORIZON = 6, 3
WIDTH = N_STEPS + HORIZON
# Each value encodes its series and its step: series * CODE + step, so a window tells where it was cut.
CODE = 1000


def coded_panel(lengths: list[int], valid: int = 5, test: int = 4) -> Panel:
    """Series of the given lengths whose last ``test`` steps are test, the ``valid`` before them validation."""
    series = np.repeat(np.arange(len(lengths)), lengths)
    steps = np.concatenate([np.arange(n) for n in lengths])
    ends = np.repeat(lengths, lengths)
    in_train, in_valid = steps < ends - valid - test, (steps >= ends - valid - test) & (steps < ends - test)
    return series_panel((series * CODE + steps).astype(np.float32), series, in_train, in_valid,
                        np.zeros(len(lengths)), np.ones(len(lengths)))


def raw(windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return windows, windows


def sampler(panel: Panel, seed: int = 7, batch_size: int = 64, pairs=raw) -> WindowSampler:
    return WindowSampler(panel, window_ranges(panel.train_ends, N_STEPS, HORIZON), WIDTH, pairs, batch_size,
                         steps_per_epoch=5, seed=seed)


def test_a_batch_depends_on_the_seed_the_epoch_and_the_index_only():
    panel = coded_panel([40, 25, 60, 31])
    first, again = sampler(panel), sampler(panel)
    assert np.array_equal(first.batch(3, 2)[0], again.batch(3, 2)[0])
    first.batch(0, 0)  # drawing other batches first changes nothing: no generator state is shared
    assert np.array_equal(first.batch(3, 2)[0], again.batch(3, 2)[0])
    others = [sampler(panel, seed=8).batch(3, 2)[0], first.batch(4, 2)[0], first.batch(3, 1)[0]]
    assert all(not np.array_equal(other, first.batch(3, 2)[0]) for other in others)


def test_windows_stay_in_one_series_and_before_its_validation_part():
    lengths = [40, 25, 60, 31, 18]  # the last holds exactly one training window: 18 - 9 held out = WIDTH
    panel = coded_panel(lengths)
    drawn = np.concatenate([sampler(panel).batch(epoch, i)[0] for epoch in range(4) for i in range(5)])
    series, steps = np.divmod(drawn.astype(np.int64), CODE)
    assert (series == series[:, :1]).all()  # never across a series boundary
    assert (np.diff(steps, axis=1) == 1).all() and (steps[:, 0] >= 0).all()
    train_ends = np.array(lengths) - 5 - 4
    assert (steps[:, -1] < train_ends[series[:, 0]]).all()  # no target in the validation or test part
    # every training window of every series is drawn, each about as often as any other
    eager = {(s, start) for s, n in enumerate(train_ends) for start in range(n - WIDTH + 1)}
    seen = set(zip(series[:, 0].tolist(), steps[:, 0].tolist()))
    assert seen == eager


def test_series_are_drawn_in_proportion_to_their_windows():
    panel = coded_panel([209, 29])  # 192 and 12 training windows
    drawn = np.concatenate([sampler(panel, batch_size=512).batch(0, i)[0] for i in range(8)])
    share = np.mean(drawn[:, 0] >= CODE)
    assert abs(share - 12 / 204) < 0.02


def test_the_validation_sample_is_every_validation_window_or_a_fixed_draw_of_them():
    panel = coded_panel([40, 25, 60])
    ranges = window_ranges(panel.valid_ends, N_STEPS, HORIZON, first_target=panel.train_ends)
    every = fixed_sample(panel, ranges, WIDTH, seed=1)
    series, steps = np.divmod(every.astype(np.int64), CODE)
    assert len(every) == ranges.total == 3 * (5 - HORIZON + 1)
    targets = steps[:, N_STEPS:]
    assert ((targets >= panel.train_ends[series[:, :1]]) & (targets < panel.valid_ends[series[:, :1]])).all()
    few = fixed_sample(panel, ranges, WIDTH, seed=1, size=4)
    assert len(few) == 4 and np.array_equal(few, fixed_sample(panel, ranges, WIDTH, seed=1, size=4))
    assert {tuple(w) for w in few.tolist()} <= {tuple(w) for w in every.tolist()}


@pytest.mark.parametrize("split", [{}, {"split": "last-horizon", "short_series": "pad"}])
def test_the_panel_holds_exactly_the_stored_windows_and_fits_them_in_the_same_frame(tmp_path, split):
    """Against ingest's own windows: series of several lengths, scaled per series (padded ones under last-horizon)."""
    frame = trending_series(n_series=6, days=60)
    frame = frame[frame.groupby("store").cumcount() >= frame["store"].str[1:].astype(int) * 4]
    prepared = prepare(IngestParams(source=str(write(frame, tmp_path / "trend.csv")), n_steps=N_STEPS,
                                    horizon=HORIZON, **COLUMNS, **split))
    panel = values_panel(prepared.values, prepared.scaler)
    for part, ranges in [("train", window_ranges(panel.train_ends, N_STEPS, HORIZON)),
                         ("valid", window_ranges(panel.valid_ends, N_STEPS, HORIZON, first_target=panel.train_ends))]:
        stored = prepared.scaler.transform(prepared.splits[part], prepared.extra[part]["series_id"])
        assert np.array_equal(fixed_sample(panel, ranges, WIDTH, seed=0, size=10**6), stored), part

    params = ForecastParams(variant="mlp", dataset_id=prepared.dataset_id, batch_size=16).for_dataset(
        {"spec": prepared.spec, "shapes": {p: list(w.shape) for p, w in prepared.splits.items()}})
    assert params.window_norm == "mean"
    batches, (x_valid, y_valid) = streaming_sampler(params, panel)
    eager = prepared.scaler.transform(prepared.splits["train"], prepared.extra["train"]["series_id"])
    # the default 1000 batches of 16 would draw far more windows than the panel holds: one pass's worth instead
    assert batches.steps_per_epoch == -(-len(eager) // 16) < params.steps_per_epoch
    x, y = batches.batch(2, 1)
    x_eager, y_eager = fitting_pairs(get_variant("mlp"), eager[batches.picks(2, 1)], N_STEPS, HORIZON, "mean")
    assert np.array_equal(x, x_eager) and np.array_equal(y, y_eager)
    valid = prepared.scaler.transform(prepared.splits["valid"], prepared.extra["valid"]["series_id"])
    x_eager, y_eager = fitting_pairs(get_variant("mlp"), valid, N_STEPS, HORIZON, "mean")
    assert np.array_equal(x_valid, x_eager) and np.array_equal(y_valid, y_eager)


PANEL_FIELDS = ("values", "starts", "lengths", "train_ends", "valid_ends", "mean", "std")


@pytest.mark.parametrize("scaling", ["series", "global", "none"])
def test_a_sharded_dataset_reads_shard_by_shard_into_the_panel_of_its_values_table_for_any_number_of_shards(
        tmp_path, monkeypatch, scaling):
    """The panel read from the shards (values, parts and scaling from the index) is, array for array, the one built
    from the whole values table, in series id order, with 1 shard or 4; the series' lengths differ."""
    from seqcast.storage import Store
    from seqcast.tasks.ingest import write_prepared

    frame = trending_series(n_series=11, days=60)
    frame = frame[frame.groupby("store").cumcount() >= frame["store"].str[1:].astype(int) * 3]
    prepared = prepare(IngestParams(source=str(write(frame, tmp_path / "trend.csv")), n_steps=N_STEPS,
                                    horizon=HORIZON, scaling=scaling, split="last-horizon", short_series="pad",
                                    **COLUMNS))
    whole = values_panel(prepared.values, prepared.scaler)
    for n_shards in (1, 4):
        monkeypatch.setenv("SEQCAST_HOME", str(tmp_path / f"home-{n_shards}"))
        ref = write_prepared(prepared, n_shards)
        assert ref.manifest["n_shards"] == n_shards
        datasets = Store(tmp_path / f"home-{n_shards}").datasets
        panel = training_panel(datasets, ref)
        for field in PANEL_FIELDS:
            assert np.array_equal(getattr(panel, field), getattr(whole, field)), (n_shards, field)
        assert panel.values.dtype == np.float32 and panel.n_series == 11
        # what the panel reads: the index's columns it names, each shard's values alone
        shards = list(datasets.shards(ref, columns=["value"], index_columns=["length"]))
        assert [s.index.column_names for s in shards] == [["length", "shard"]] * n_shards
        assert [s.values.column_names for s in shards] == [["value"]] * n_shards
        assert datasets.read_table(ref, "series", ["mean"]).column_names == ["mean"]


def test_a_sharded_dataset_with_gaps_or_without_scaling_statistics_gives_no_panel_or_names_the_series(
        tmp_path, home):
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from seqcast.storage import Store
    from seqcast.tasks.ingest import write_prepared

    frame = trending_series(n_series=4, days=60)
    gaps = frame.drop(index=[30, 31, 95])  # missing days of s00 and s01
    prepared = prepare(IngestParams(source=str(write(gaps, tmp_path / "gaps.csv")), n_steps=N_STEPS,
                                    horizon=HORIZON, missing="drop", **COLUMNS))
    datasets = Store(home).datasets
    assert training_panel(datasets, write_prepared(prepared, 2)) is None  # the sampler would cross the gaps

    prepared = prepare(IngestParams(source=str(write(frame, tmp_path / "whole.csv")), n_steps=N_STEPS,
                                    horizon=HORIZON, **COLUMNS))
    ref = write_prepared(prepared, 2)
    index = datasets.read_table(ref, "series")
    unscaled = pc.equal(index.column("series_id"), "s02")
    index = index.set_column(index.schema.get_field_index("std"), "std",
                             pc.if_else(unscaled, pa.scalar(None, pa.float64()), index.column("std")))
    pq.write_table(index, ref.path / "series.parquet")  # an index written without the statistics
    with pytest.raises(ValueError, match="no scaling statistics for series s02 in the dataset's index"):
        training_panel(datasets, ref)


def test_a_panel_fills_series_in_any_order_and_refuses_values_that_do_not_fit():
    panel = empty_panel(np.array([3, 2, 4]), np.array([1, 1, 2]), np.array([2, 1, 3]), np.zeros(3), np.ones(3))
    fill_series(panel, np.array([2, 0]), np.array([20, 21, 22, 23, 0, 1, 2], dtype=np.float32))
    fill_series(panel, np.array([1]), np.array([10, 11], dtype=np.float32))
    assert panel.values.tolist() == [0, 1, 2, 10, 11, 20, 21, 22, 23] and panel.starts.tolist() == [0, 3, 5]
    with pytest.raises(ValueError, match="3 values for 1 series of 2 steps in all"):
        fill_series(panel, np.array([1]), np.zeros(3, dtype=np.float32))
    with pytest.raises(ValueError, match="series 1 of the panel has parts that do not fit its 2 steps"):
        empty_panel(np.array([3, 2]), np.array([1, 2]), np.array([2, 3]), np.zeros(2), np.ones(2))


def test_a_batch_allocates_memory_for_its_own_windows_only():
    """A panel of 20,000 series (2M values, 8 MB) and batches of 32 windows: drawing one costs a few KB, not the
    panel's windows (20,000 x 91 windows would be 65 MB)."""
    panel = coded_panel([100] * 20_000)
    shapes = []

    def pairs(windows):
        shapes.append(windows.shape)
        return windows[:, :N_STEPS, np.newaxis], windows[:, N_STEPS:]

    draw = sampler(panel, batch_size=32, pairs=pairs)
    draw.batch(0, 0)  # numpy's first call of a kind may allocate caches of its own
    tracemalloc.start()
    x, y = draw.batch(0, 1)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert shapes == [(32, WIDTH)] * 2 and x.shape == (32, N_STEPS, 1) and y.shape == (32, HORIZON)
    assert peak < 64 * 1024, peak


def test_a_run_recorded_before_sampling_trained_on_every_stored_window():
    import json

    from seqcast.config.params import normalized_params

    today = ForecastParams(variant="mlp", dataset_id="ds-000000000000").model_dump()
    assert today["steps_per_epoch"] > 0 and normalized_params(json.dumps(today)) == today
    before = {k: v for k, v in today.items() if k != "steps_per_epoch"}
    assert normalized_params(json.dumps(before))["steps_per_epoch"] == 0


def test_a_panel_needs_each_series_steps_together():
    with pytest.raises(ValueError, match="steps of each series must lie together"):
        series_panel(np.zeros(4, np.float32), np.array([0, 1, 0, 1]), np.ones(4), np.zeros(4), np.zeros(2),
                     np.ones(2))


def test_keras_fits_each_epoch_on_that_epochs_batches_also_from_a_later_initial_epoch():
    """The batches a fit draws are keyed by Keras's own epoch number, so a fit resumed at epoch k draws epoch k's."""
    import keras

    from seqcast.training.windows import keras_dataset

    calls, fitting = [], []

    class Recording(WindowSampler):
        def batch(self, epoch, index):
            if fitting:  # Keras peeks at a batch or two for their shapes before the first epoch begins
                calls.append((epoch, index))
            return super().batch(epoch, index)

    class Fitting(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            fitting.append(epoch)

    panel = coded_panel([40, 25, 60, 31])
    draw = Recording(panel, window_ranges(panel.train_ends, N_STEPS, HORIZON), WIDTH,
                     lambda w: (w[:, :N_STEPS] % CODE / 100, w[:, N_STEPS:] % CODE / 100), 8, steps_per_epoch=5,
                     seed=0)
    for initial_epoch, epochs in [(0, 2), (2, 4)]:
        calls.clear(), fitting.clear()
        model = keras.Sequential([keras.Input((N_STEPS,)), keras.layers.Dense(HORIZON)])
        model.compile(loss="mse", steps_per_execution=4)
        batches, epoch_callback = keras_dataset(draw)
        model.fit(batches, epochs=epochs, initial_epoch=initial_epoch, callbacks=[epoch_callback, Fitting()],
                  verbose=0)
        assert sorted(set(calls)) == [(e, i) for e in range(initial_epoch, epochs) for i in range(5)]


def test_a_resumed_streaming_fit_draws_the_batches_the_uninterrupted_one_did(tmp_path):
    """Crash after epoch 2 and resume: every epoch's loss is the uninterrupted fit's (batches keyed by epoch)."""
    import logging

    import keras

    from seqcast.storage.backups import TrainingBackup
    from seqcast.training.fit import train_streaming

    panel = coded_panel([40, 25, 60, 31])
    panel = Panel(panel.values % CODE / 10, *(getattr(panel, f) for f in ("starts", "lengths", "train_ends",
                                                                             "valid_ends", "mean", "std")))
    params = ForecastParams(variant="mlp", dataset_id="ds-000000000000", n_steps=N_STEPS, horizon=HORIZON,
                            units=8, epochs=4, patience=4, batch_size=8, steps_per_epoch=6, jit_compile=False,
                            window_norm="mean", loss="mae")

    class CrashBeforeEpoch3(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 2:
                raise RuntimeError("crash")

    def fit(folder, callbacks=()):
        return train_streaming(params, panel, logging.getLogger("test"), backup=TrainingBackup(folder),
                               callbacks=list(callbacks))

    whole = fit(tmp_path / "whole")
    with pytest.raises(RuntimeError, match="crash"):
        fit(tmp_path / "crashed", [CrashBeforeEpoch3()])
    resumed = fit(tmp_path / "crashed")
    assert [row["epoch"] for row in resumed.history] == [1, 2, 3, 4]
    for key in ("loss", "val_loss"):
        assert [row[key] for row in resumed.history] == pytest.approx([row[key] for row in whole.history],
                                                                      rel=1e-5), key


@pytest.mark.usefixtures("prefect_harness")
def test_mlp_trains_on_sampled_windows_of_an_ingested_dataset_through_the_forecast_flow(home, tmp_path):
    from seqcast.flows.forecast import forecast
    from seqcast.flows.ingest import ingest
    from seqcast.storage import Store
    from tests.series_files import daily_series

    path = write(daily_series(n_series=5, days=90, seed=3), tmp_path / "daily.csv")
    dataset_id = ingest(source=str(path), **COLUMNS, n_steps=14, horizon=7, split="last-horizon")["dataset_id"]
    result = forecast(variant="mlp", dataset_id=dataset_id, epochs=2, steps_per_epoch=3, batch_size=16,
                      units=8, jit_compile=False)
    saved = Store(home).models.saved_manifest(result["run_id"])
    assert saved["training_windows"] == "sampled" and saved["params"]["steps_per_epoch"] == 3
    assert [row["epoch"] for row in saved["history"]] == [1, 2]
    assert np.isfinite(result["valid_mse"]) and np.isfinite(result["test_mse"])

    stored = forecast(variant="mlp", dataset_id=dataset_id, epochs=1, steps_per_epoch=0, units=8, jit_compile=False)
    assert Store(home).models.saved_manifest(stored["run_id"])["training_windows"] == "stored"
    synthetic = forecast(variant="linear", n_series=240, n_train=160, n_valid=40, n_test=40, epochs=1)
    assert Store(home).models.saved_manifest(synthetic["run_id"])["training_windows"] == "stored"

"""The M3 levers: the loss option, a cropped input window, the mlp variant, and ensembles of member runs."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
from pydantic import ValidationError

from seqcast.app.cli import main as cli
from seqcast.config.params import INGESTED_LOSS, ForecastParams, normalized_params
from seqcast.data.synthetic import generate_time_series
from seqcast.models.ensemble import member_params
from seqcast.models.registry import MLP_LAYERS, REGISTRY, build_model, get_variant
from seqcast.training.fit import train
from tests.conftest import results_db
from tests.series_files import COLUMNS, daily_series, write

INGESTED = {"spec": {"kind": "ingested", "n_steps": 20, "horizon": 5},
            "shapes": {"train": [100, 25], "valid": [20, 25]}}


def fit(params: ForecastParams, n: int = 120):
    windows = generate_time_series(n, params.n_steps + params.effective_horizon, seed=3)[..., 0]
    return train(params, windows[:n * 2 // 3], windows[n * 2 // 3:], logging.getLogger("test"))


def test_the_loss_default_is_resolved_once_and_recorded():
    assert ForecastParams(variant="lstm").loss == "mse"  # the book's series: as the chapter trains them
    on_dataset = ForecastParams(variant="mlp", dataset_id="ds-0123456789ab")
    assert on_dataset.loss is None and on_dataset.for_dataset(INGESTED).loss == INGESTED_LOSS
    assert ForecastParams(variant="mlp", dataset_id="ds-0123456789ab", loss="huber").for_dataset(INGESTED).loss \
        == "huber"
    assert ForecastParams(variant="naive_10", dataset_id="ds-0123456789ab").for_dataset(INGESTED).loss == "mse"
    # a run recorded before the option existed trained on MSE, wherever it ran
    recorded = ForecastParams(variant="mlp", dataset_id="ds-0123456789ab").for_dataset(INGESTED).model_dump()
    assert normalized_params(json.dumps({k: v for k, v in recorded.items() if k != "loss"}))["loss"] == "mse"
    with pytest.raises(ValidationError, match="loss\n.*Input should be 'mse', 'mae' or 'huber'"):
        ForecastParams(variant="mlp", loss="mape")


def test_the_cli_mirrors_the_loss_and_refuses_a_bad_one(capsys):
    with pytest.raises(SystemExit):
        cli(["run", "--variant", "mlp", "--loss", "mape"])
    assert "argument --loss: invalid choice: 'mape'" in capsys.readouterr().err


@pytest.mark.integration
def test_the_loss_changes_the_training():
    common = dict(variant="linear_10", n_steps=12, epochs=1, jit_compile=False)
    weights = {loss: fit(ForecastParams(**common, loss=loss)).model.get_weights()[0] for loss in ("mse", "mae")}
    again = fit(ForecastParams(**common, loss="mse")).model.get_weights()[0]
    np.testing.assert_array_equal(weights["mse"], again)  # same seed, same loss: the same weights ...
    assert not np.allclose(weights["mse"], weights["mae"])  # ... so the loss is what changed them


@pytest.mark.integration
def test_mlp_builds_and_trains_one_epoch():
    model = build_model("mlp", n_steps=12, horizon=5, units=8)
    assert model.count_params() == (12 * 8 + 8) + (MLP_LAYERS - 1) * (8 * 8 + 8) + (8 * 5 + 5)
    assert ForecastParams(variant="mlp").hyperparameters() == {"units": 256}
    result = fit(ForecastParams(variant="mlp", n_steps=12, horizon=5, units=8, epochs=1, jit_compile=False))
    assert result.epochs == 1 and np.isfinite(result.history[0]["val_loss"])


@pytest.mark.integration
def test_a_cropped_model_sees_only_the_last_input_steps():
    params = ForecastParams(variant="mlp", n_steps=12, horizon=5, units=8, epochs=1, jit_compile=False,
                            input_steps=4)
    model = fit(params).model
    x = generate_time_series(6, 12, seed=9)
    changed = x.copy()
    changed[:, :8] += 5.0  # everything before the last 4 steps
    assert tuple(model.inputs[0].shape) == (None, 12, 1)
    np.testing.assert_allclose(model.predict(changed, verbose=0), model.predict(x, verbose=0), rtol=1e-6)
    with pytest.raises(ValidationError, match="input_steps applies to variants with a vector target"):
        ForecastParams(variant="lstm", input_steps=4)
    with pytest.raises(ValidationError, match="input_steps 60 is more than the n_steps 50"):
        ForecastParams(variant="mlp", input_steps=60)
    with pytest.raises(ValueError, match="input_steps 30 is more than the n_steps 20 of dataset"):
        ForecastParams(variant="mlp", dataset_id="ds-0123456789ab", input_steps=30).for_dataset(INGESTED)


def test_ensemble_members_are_trainings_a_plain_run_of_their_variant_would_share():
    for name in ("ensemble_mlp", "ensemble_mix"):
        members = get_variant(name).members
        assert members and all(REGISTRY[m.variant].target == "vector" for m in members)
    ensemble = ForecastParams(variant="ensemble_mix", dataset_id="ds-0123456789ab", seed=7).for_dataset(INGESTED)
    first, *_, last = (member_params(ensemble, m) for m in get_variant("ensemble_mix").members)
    plain = ForecastParams(variant="mlp", dataset_id="ds-0123456789ab", seed=7).for_dataset(INGESTED)
    assert first == plain  # the first member is the plain mlp run
    assert (last.variant, last.seed, last.input_steps, last.jit_compile) == ("linear_10", 8, 10, False)
    with pytest.raises(ValidationError, match="variant 'ensemble_mix' does not use units"):
        ForecastParams(variant="ensemble_mix", units=8)


@pytest.mark.usefixtures("prefect_harness")
def test_an_ensemble_run_is_the_median_of_its_member_runs_and_reuses_them(home, tmp_path):
    from seqcast.data.scaling import Scaler
    from seqcast.evaluation.run import forecast_inputs
    from seqcast.flows.forecast import forecast
    from seqcast.flows.ingest import ingest
    from seqcast.storage import Store
    from seqcast.tasks.evaluate import load_model

    dataset_id = ingest(source=str(write(daily_series(n_series=4), tmp_path / "sales.csv")), **COLUMNS,
                        n_steps=14, horizon=7)["dataset_id"]
    summary = forecast(variant="ensemble_mix", dataset_id=dataset_id, epochs=1, jit_compile=False)

    def query(sql, params=()):
        with results_db(home) as con:
            return con.execute(sql, list(params)).fetchall()

    manifest = json.loads((home / summary["model_path"]).read_text())
    member_ids = [m["run_id"] for m in manifest["members"]]
    members = query("SELECT run_id, variant, status, flow_run_id, params->>'input_steps' FROM runs "
                    "WHERE run_id IN (SELECT unnest(?))", [member_ids])
    assert len(members) == 5 and {r[2] for r in members} == {"completed"}
    assert len({r[3] for r in members} | {summary["run_id"]}) == 6  # each member its own flow run
    assert sorted((r[1], r[4] or "") for r in members) == [("linear_10", ""), ("linear_10", "7"), ("mlp", ""),
                                                           ("mlp", "7"), ("nbeats_generic", "")]

    # its test forecasts are the element-wise median of its members' recorded ones
    def predictions(run_id):
        return np.array([r[0] for r in query("SELECT y_pred FROM predictions WHERE run_id = ? AND split = 'test' "
                                             "ORDER BY series_index, horizon_step", [run_id])])
    own = predictions(summary["run_id"])
    assert len(own) and np.array_equal(own, np.median([predictions(i) for i in member_ids], axis=0))

    # loaded as the backtests load any run, it forecasts the same
    store = Store(home)
    dataset = store.datasets.find(dataset_id)
    windows, series_ids = store.datasets.read_windows(dataset, "test")
    n_steps = dataset.manifest["spec"]["n_steps"]
    again = forecast_inputs(get_variant("ensemble_mix"), load_model(summary["model_path"]),
                            Scaler.from_dict(manifest["scaling"]), windows[:, :n_steps], series_ids,
                            windows.shape[1] - n_steps)
    np.testing.assert_allclose(again.reshape(-1), own, rtol=1e-6)

    # a second ensemble run trains nothing: it reuses the same member runs
    runs_before = query("SELECT count(*) FROM runs")[0][0]
    second = forecast(variant="ensemble_mix", dataset_id=dataset_id, epochs=1, jit_compile=False)
    assert query("SELECT count(*) FROM runs")[0][0] == runs_before + 1
    assert [m["run_id"] for m in json.loads((home / second["model_path"]).read_text())["members"]] == member_ids
    assert np.array_equal(predictions(second["run_id"]), own)

    # and it forecasts the next horizon like any run
    assert cli(["predict", "--run-id", summary["run_id"], "--output", str(tmp_path / "next.parquet")]) == 0
    assert query("SELECT count(DISTINCT series_id), max(step) FROM forecasts")[0] == (4, 7)


@pytest.mark.integration
def test_a_hybrid_ensemble_takes_the_median_of_statistical_and_model_forecasts():
    from seqcast.data.scaling import Scaler
    from seqcast.evaluation.holdout import SplitSeries
    from seqcast.evaluation.run import forecast_inputs
    from seqcast.models import stats
    from seqcast.models.ensemble import EnsembleMember, EnsembleModel

    rng = np.random.default_rng(4)
    history = [100 + np.cumsum(rng.normal(1, 3, n)) for n in (40, 55, 31)]
    series = SplitSeries(["a", "b", "c"], history, np.zeros((3, 6)), np.array([1, 1, 1]))
    inputs = np.stack([h[-12:] for h in history])
    ensemble = EnsembleModel([EnsembleMember(None, get_variant("stats_theta"), None, "none"),
                              EnsembleMember(None, get_variant("stats_ets"), None, "none"),
                              EnsembleMember(None, get_variant("naive"), None, "none")])
    found = forecast_inputs(get_variant("ensemble_hybrid"), ensemble, Scaler(), inputs, ["a", "b", "c"], 6,
                            history=series)
    members = [stats.theta(history, 1, 6), stats.ets(history, 1, 6), np.repeat(inputs[:, -1:], 6, axis=1)]
    np.testing.assert_allclose(found, np.median(members, axis=0))
    assert not np.allclose(found, members[2])  # the statistical members count: not the naive forecast alone
    with pytest.raises(ValueError, match="forecasts from each series' history"):
        forecast_inputs(get_variant("ensemble_hybrid"), ensemble, Scaler(), inputs, ["a", "b", "c"], 6)


@pytest.mark.parametrize("argv, message", [
    (["run", "--variant", "ensemble_hybrid"],
     "seqcast: error: variant 'ensemble_hybrid' fits each series' own history, which the book's synthetic windows do "
     "not keep: name an ingested dataset with dataset_id"),
    (["predict", "--dataset-id", "ds-000000000000", "--variant", "ensemble_hybrid"],
     "  variant: variant 'ensemble_hybrid' combines a statistical baseline, which --variant does not choose (it ranks "
     "trained runs by validation MSE)"),
])
def test_a_hybrid_ensemble_needs_a_dataset_and_is_not_ranked_by_validation_mse(argv, message, capsys):
    assert REGISTRY["ensemble_hybrid"].needs_dataset
    assert cli(argv) == 2
    assert message in capsys.readouterr().err

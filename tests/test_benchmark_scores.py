"""Statistical baselines as variants and scale-free scores (sMAPE, MASE, OWA) on a last-horizon dataset."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

from seqcast.app.cli import main as cli
from seqcast.data import m3
from seqcast.data.ingest import season_length
from seqcast.evaluation import aggregate, baselines
from seqcast.flows.forecast import forecast
from seqcast.flows.ingest import ingest
from seqcast.models import stats
from seqcast.storage import Store
from tests.conftest import results_db

pytestmark = pytest.mark.usefixtures("prefect_harness")

STATS_VARIANTS = ["stats_naive", "stats_seasonal_naive", "stats_naive2", "stats_theta", "stats_ets"]


def rows(home, sql: str, params=None):
    with results_db(home) as con:
        return con.execute(sql, params or []).fetchall()


@pytest.fixture(scope="module")
def monthly():
    """Twenty M3 monthly series (short and long ones), whole, as a long-format Parquet file's frame."""
    data = m3.load_subset("monthly")
    chosen = list(range(0, len(data), 75))
    subset = m3.M3Subset("monthly", [data.series_ids[i] for i in chosen], [data.train[i] for i in chosen],
                         data.test[chosen], data.h, data.period, data.freq)
    return subset


def ingest_monthly(monthly, tmp_path) -> str:
    path = tmp_path / "m3-monthly-part.parquet"
    m3.long_frame(monthly).to_parquet(path)
    # monthly: the period is inferred from the frequency (12), as M3 states it
    summary = ingest(source=str(path), freq="MS", n_steps=36, horizon=18, split="last-horizon", short_series="pad")
    return summary["dataset_id"]


def test_season_length_follows_the_frequency():
    assert [season_length(f) for f in ("MS", "ME", "QS", "QS-OCT", "D", "W-SUN", "h", "YS", "2D", "min")] == \
        [12, 12, 4, 4, 7, 52, 24, 1, 1, 1]


@pytest.mark.slow
def test_stats_variants_score_like_the_competition_through_the_flow(home, tmp_path, monthly, capsys):
    dataset_id = ingest_monthly(monthly, tmp_path)
    store = Store(home)
    ref = store.datasets.require(dataset_id)

    # (d) the per-step values round-trip: each series whole, in order, its last 18 values test, 18 before valid
    values, periods = store.datasets.read_series_values(ref)
    assert set(periods.values()) == {12} and len(periods) == len(monthly)
    table = pq.read_table(ref.path / "values.parquet").to_pandas()
    for i, sid in enumerate(monthly.series_ids):
        one = table[table.series_id == sid].sort_values("step")
        observed = one[~one.padded]
        np.testing.assert_array_equal(observed.value.to_numpy(), monthly.full(i))
        assert list(observed.part[-36:]) == ["valid"] * 18 + ["test"] * 18
        assert (one.step.to_numpy() == np.arange(len(one))).all()
        assert (one.part[one.padded] == "train").all()
    assert table.padded.any()  # the shortest monthly series need padding for a 36-step window per part

    # (a) every statistical variant runs through the same flow and tables; one through `seqcast run`
    for variant in STATS_VARIANTS:
        if variant == "stats_theta":
            assert cli(["run", "--dataset-id", dataset_id, "--variant", variant]) == 0
            assert "stats_theta" in capsys.readouterr().out
        else:
            forecast(variant=variant, dataset_id=dataset_id)
    runs = rows(home, "SELECT variant, status, model_path, epochs, horizon FROM runs ORDER BY variant")
    assert runs == [(v, "completed", None, None, 18) for v in sorted(STATS_VARIANTS)]
    assert rows(home, "SELECT count(*) FROM metrics WHERE horizon_step IS NULL") == [(5 * 2 * 2 * 3,)]
    assert sorted(v for (v,) in rows(home, "SELECT variant FROM leaderboard")) == sorted(STATS_VARIANTS)
    scored = rows(home, "SELECT variant, split, n_series, smape, mase, owa FROM benchmark_scores ORDER BY ALL")
    assert [(v, s, n) for v, s, n, *_ in scored] == [(v, s, len(monthly)) for v in sorted(STATS_VARIANTS)
                                                     for s in ("test", "valid")]
    assert all(0 < smape < 200 and mase > 0 and owa > 0 for *_, smape, mase, owa in scored)
    assert rows(home, "SELECT count(*) FROM step_scores WHERE split = 'test' AND predictor = 'model'") == [(5 * 18,)]

    # (e) Naive2 against itself: OWA is 1
    owa = dict(((v, s), o) for v, s, *_, o in scored)
    assert owa[("stats_naive2", "test")] == pytest.approx(1.0) and owa[("stats_naive2", "valid")] == pytest.approx(1.0)

    # (b) stats_theta's test sMAPE and MASE equal the competition's protocol computed directly: fit on x, score xx
    forecasts = stats.theta(monthly.train, monthly.period, monthly.h)
    direct = aggregate.score(monthly.test, forecasts, monthly.train, monthly.period)
    naive2 = aggregate.score(monthly.test, baselines.naive2(monthly.train, monthly.period, monthly.h), monthly.train,
                          monthly.period)
    ((smape, mase, flow_owa),) = rows(home, "SELECT smape, mase, owa FROM benchmark_scores "
                                            "WHERE variant = 'stats_theta' AND split = 'test'")
    assert smape == pytest.approx(direct.smape, rel=1e-12) and mase == pytest.approx(direct.mase, rel=1e-12)
    assert flow_owa == pytest.approx(direct.owa(naive2), rel=1e-12)
    # and the flow's MSE is the same forecast's, against the stored (float32) test targets
    ((test_mse,),) = rows(home, "SELECT test_mse FROM run_scores WHERE variant = 'stats_theta'")
    assert test_mse == pytest.approx(np.mean((monthly.test.astype(np.float32) - forecasts) ** 2), rel=1e-5)

    # a variant outside the stats family gets the same scores: the naive baseline forecasts the windows' last
    # input, which on a last-horizon split is the last known value, as stats_naive's is
    forecast(variant="naive", dataset_id=dataset_id)
    by_variant = dict(((v, s), (smape, mase, o)) for v, s, smape, mase, o in rows(
        home, "SELECT variant, split, smape, mase, owa FROM benchmark_scores WHERE variant LIKE '%naive'"))
    for split in ("valid", "test"):
        assert by_variant[("naive", split)] == pytest.approx(by_variant[("stats_naive", split)], rel=1e-6)


@pytest.mark.parametrize("argv", [["--variant", "stats_theta"], ["--variant", "linear", "--variant", "stats_ets"]])
def test_stats_variants_are_refused_on_the_synthetic_series_before_any_work(home, capsys, argv):
    assert cli(["run", *argv]) == 2
    err = capsys.readouterr().err
    assert "fits each series' own history, which the book's synthetic windows do not keep: name an ingested " \
           "dataset with dataset_id (--dataset-id" in err and "Traceback" not in err
    assert not home.exists()
    with pytest.raises(ValueError, match="synthetic windows do not keep"):
        forecast(variant="stats_naive")
    assert not (home / "datasets").exists()


def test_choosing_by_variant_refuses_the_statistical_baselines():
    from pydantic import ValidationError

    from seqcast.forecasting.predict import FAMILIES, PredictParams

    # --variant and --family rank trained runs by validation MSE; a statistical baseline has none to rank, and
    # forecasts as a champion or by --run-id instead (tests/test_champion.py)
    assert "stats" not in FAMILIES
    with pytest.raises(ValidationError, match="'stats_theta' is a statistical baseline, which --variant does not "
                                              "choose"):
        PredictParams(dataset_id="ds-1", variant="stats_theta")


def test_holdout_parts_leave_out_padding_gaps_and_series_without_a_scale():
    from seqcast.evaluation.holdout import scale_free_scores, split_series

    # a: padded by 2 steps, a gap in its training part; b: flat history (no MASE scale); c: a gap in its test part
    a = [1.0, 1.0, 1.0, 2.0, np.nan, 4.0, 5.0, 6.0, 7.0, 8.0]
    b = [3.0] * 6 + [3.0, 4.0, 5.0, 6.0]
    c = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, np.nan, 10.0]
    parts = ["train"] * 6 + ["valid"] * 2 + ["test"] * 2
    values = {"series_id": np.array(["c"] * 10 + ["a"] * 10 + ["b"] * 10, dtype=object),
              "step": np.tile(np.arange(10), 3), "value": np.array(c + a + b),
              "part": np.array(parts * 3, dtype=object), "padded": np.array([False] * 10 + [True] * 2 + [False] * 18)}
    test = split_series(values, {"a": 1, "b": 1, "c": 1}, "test", 2)
    assert test.series_ids == ["a", "b"]  # c's test part has a gap
    np.testing.assert_array_equal(test.history[0], [1.0, 2.0, 4.0, 5.0, 6.0])  # no padding, no gap
    np.testing.assert_array_equal(test.actual, [[7.0, 8.0], [5.0, 6.0]])
    series_rows, step_rows = scale_free_scores("test", test, np.array(["a", "b"], dtype=object),
                                               np.array([[8.0, 9.0], [3.0, 3.0]]))
    model = {r["series_id"]: r for r in series_rows if r["predictor"] == "model"}
    assert model["a"]["smape"] == pytest.approx((200 / 15 + 200 / 17) / 2)
    # b's history 3, 3, 3, 3, 3, 3, 3, 4 changes once in 7 steps: scale 1/7; forecast 3, 3 for 5, 6: errors 2 and 3
    assert model["b"]["mase"] == pytest.approx(2.5 / (1 / 7))
    valid = split_series(values, {"a": 1, "b": 1, "c": 1}, "valid", 2)
    rows_valid, _ = scale_free_scores("valid", valid, np.array(valid.series_ids, dtype=object), valid.actual)
    flat = {r["series_id"]: r["mase"] for r in rows_valid if r["predictor"] == "model"}
    assert flat["b"] is None and flat["a"] == 0.0  # b's training part is flat: no scale; a is forecast exactly
    assert {r["step"] for r in step_rows} == {1, 2}

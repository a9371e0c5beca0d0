"""Backtests over shards: the scores from per-shard partial sums, the same rows and scores whatever the number of
shards, and a retried flow run that keeps the shards it staged."""

from __future__ import annotations

import numpy as np
import pytest

from seqcast.evaluation.backtest import backtest_scores, backtest_sums, sums_scores
from seqcast.flows.backtest import backtest
from tests.conftest import results_db
from tests.test_backtest import ingested, monthly_file  # noqa: F401 - the module's M3 file, a fixture here too

pytestmark = pytest.mark.usefixtures("prefect_harness")
M3_INGEST = ("--freq", "MS", "--n-steps", "36", "--horizon", "18", "--split", "last-horizon", "--short-series",
             "pad")
FORECAST_COLUMNS = ("cutoff", "steps_back", "series_id", "step", "timestamp", "actual", "forecast", "naive2",
                    "smape", "naive2_smape", "scaled_error", "naive2_scaled_error", "padded_steps", "scale", "lo_80",
                    "hi_80", "lo_95", "hi_95")


def scored_columns(seed: int, n_series: int = 40, horizon: int = 3, n_cutoffs: int = 3):
    """Forecast columns of ``n_series`` series at every cutoff, with missing scaled errors (no scale) and missing
    intervals (the oldest cutoff, no scale), and their bounds at 80 and 90."""
    rng = np.random.default_rng(seed)
    cutoff, series, step = (a.ravel() for a in np.meshgrid(np.arange(n_cutoffs), np.arange(n_series),
                                                           np.arange(1, horizon + 1), indexing="ij"))
    m = len(cutoff)
    scale = np.where(series % 7 == 0, np.nan, rng.uniform(1, 3, n_series)[series])
    actual, forecast = rng.normal(50, 5, m), rng.normal(50, 5, m)
    columns = {"cutoff": cutoff, "series_id": np.array([f"s{i:03d}" for i in series], dtype=object), "step": step,
               "actual": actual, "forecast": forecast, "scale": scale,
               "smape": rng.uniform(0, 20, m), "naive2_smape": rng.uniform(0, 20, m),
               "scaled_error": np.abs(actual - forecast) / scale, "naive2_scaled_error": rng.uniform(0, 2, m) / scale}
    width = {80.0: 1.3 * scale, 90.0: 1.8 * scale}
    oldest = cutoff == n_cutoffs - 1
    bounds = {level: (np.where(oldest, np.nan, forecast - w), np.where(oldest, np.nan, forecast + w))
              for level, w in width.items()}
    return columns, bounds


def as_rows(columns, bounds):
    """The columns as the whole-panel scoring functions take them: forecast rows and interval rows (None for NaN)."""
    def plain(value):
        value = value.item() if hasattr(value, "item") else value
        return None if isinstance(value, float) and np.isnan(value) else value

    names = list(columns)
    rows = [{name: plain(value) for name, value in zip(names, values)} for values in zip(*columns.values())]
    intervals = [{"cutoff": row["cutoff"], "series_id": row["series_id"], "step": row["step"], "level": level,
                  "lo": plain(lo[i]), "hi": plain(hi[i])} for level, (lo, hi) in bounds.items()
                 for i, row in enumerate(rows)]
    return rows, intervals


def test_partial_sums_of_shards_give_the_scores_of_all_rows_at_once():
    columns, bounds = scored_columns(seed=4)
    levels = tuple(bounds)
    expected = backtest_scores(*as_rows(columns, bounds))
    # three shards, each holding whole series
    shard = np.array([int(sid[1:]) % 3 for sid in columns["series_id"]])
    parts = [backtest_sums({name: column[shard == k] for name, column in columns.items()},
                           {level: (lo[shard == k], hi[shard == k]) for level, (lo, hi) in bounds.items()}, 3, levels)
             for k in range(3)]
    found = sums_scores(sum(parts[1:], parts[0]))
    assert [row["cutoff"] for row in found[0]] == [0, 1, 2, None]
    assert [row["n_series"] for row in found[0]] == [40, 40, 40, 40]
    assert found[0][2]["coverage_80"] is None and found[0][2]["msis_80"] is None  # the oldest cutoff has none
    assert found[0][0]["coverage_95"] is None  # a default level this backtest did not choose
    for mine, theirs in zip(found, expected, strict=True):
        assert len(mine) == len(theirs)
        for a, b in zip(mine, theirs, strict=True):
            assert a.keys() == b.keys()
            assert a == pytest.approx(b, rel=1e-12)


def recorded(home, run_id: str):
    """A backtest's stored cutoff scores, and its forecast and interval rows in a fixed order."""
    with results_db(home) as con:
        scores = con.execute("SELECT * EXCLUDE (run_id) FROM backtest_cutoff_scores WHERE run_id = ? "
                             "ORDER BY cutoff NULLS LAST", [run_id]).fetchall()
        forecasts = con.execute(f"SELECT {', '.join(FORECAST_COLUMNS)} FROM backtest_forecasts WHERE run_id = ? "
                                f"ORDER BY cutoff, series_id, step", [run_id]).fetchall()
        intervals = con.execute("SELECT * EXCLUDE (run_id) FROM backtest_intervals WHERE run_id = ? "
                                "ORDER BY level, cutoff, series_id, step", [run_id]).fetchall()
        (left_out,) = con.execute("SELECT left_out FROM backtests WHERE run_id = ?", [run_id]).fetchone()
    return scores, forecasts, intervals, left_out


def numbers(rows: list[tuple], start: int) -> np.ndarray:
    """The numeric columns of ``rows`` from ``start`` on, NULL as NaN."""
    return np.array([[np.nan if v is None else v for v in row[start:]] for row in rows], dtype=np.float64)


def test_a_backtest_scores_the_same_with_one_shard_and_with_several(home, tmp_path, capsys, monkeypatch,
                                                                    monthly_file):  # noqa: F811
    path, subset = monthly_file
    found = {}
    for n_shards in (1, 3):
        where = tmp_path / f"home-{n_shards}"
        monkeypatch.setenv("SEQCAST_HOME", str(where))
        dataset_id = ingested(capsys, str(path), *M3_INGEST, "--shards", str(n_shards))
        summary = backtest(variant="stats_theta", dataset_id=dataset_id, windows=3)
        found[n_shards] = recorded(where, summary["run_id"])
        assert not (where / "staged").exists() or not any((where / "staged").iterdir())  # discarded once recorded
    (scores, forecasts, intervals, left_out), (scores_3, forecasts_3, intervals_3, left_out_3) = found[1], found[3]
    assert len(forecasts) == sum(row[4] for row in scores[:-1]) * 18 and len(intervals) == 2 * len(forecasts)
    assert left_out == left_out_3 > 0  # the shortest series drop out of the oldest cutoff
    # the same rows; statsforecast's Theta may differ in the last digits with the other series of its batch
    assert [row[:5] for row in forecasts] == [row[:5] for row in forecasts_3]
    np.testing.assert_allclose(numbers(forecasts, 5), numbers(forecasts_3, 5), rtol=1e-9)
    assert [row[:4] for row in intervals] == [row[:4] for row in intervals_3]
    np.testing.assert_allclose(numbers(intervals, 4), numbers(intervals_3, 4), rtol=1e-9)
    for one, several in zip(scores, scores_3, strict=True):
        assert one[0] == several[0] and one[4] == several[4]  # the cutoff and its number of series
        assert one == pytest.approx(several, rel=1e-9)


def test_a_retried_flow_run_keeps_the_shards_it_staged(home, capsys, monkeypatch, monthly_file):  # noqa: F811
    import seqcast.flows.shards as flows_shards
    import seqcast.tasks.backtest as tasks_backtest

    path, _ = monthly_file
    dataset_id = ingested(capsys, str(path), *M3_INGEST, "--shards", "3")
    reads, read = [], tasks_backtest.shard_values

    def failing_once(ref, shard):  # shard 1's first read fails: its flow run fails once the others are staged
        reads.append(shard)
        if shard == 1 and reads.count(1) == 1:
            raise OSError("shard 1 is out of reach")
        return read(ref, shard)

    monkeypatch.setattr(tasks_backtest, "shard_values", failing_once)
    monkeypatch.setattr(flows_shards, "SHARD_RETRIES", 0)  # the shard fails for good at once: the flow retries
    summary = backtest.with_options(retry_delay_seconds=0)(variant="stats_theta", dataset_id=dataset_id, windows=3)

    assert sorted(reads) == [0, 1, 1, 2]  # the retried flow run forecast shard 1 alone
    scores, forecasts, intervals, _ = recorded(home, summary["run_id"])
    assert len(forecasts) == sum(row[4] for row in scores[:-1]) * 18  # one set of rows, none twice
    assert len({(row[0], row[2], row[3]) for row in forecasts}) == len(forecasts)
    assert len(intervals) == 2 * len(forecasts)


def reference_cut(values, periods, horizon: int, n_steps: int, index: int, offset: int):
    """:func:`seqcast.evaluation.backtest.cut` series by series, as its definition reads."""
    import pandas as pd

    from seqcast.evaluation.backtest import min_history
    from seqcast.evaluation.holdout import series_order

    order, runs = series_order(values)
    ids, value = values["series_id"][order], np.asarray(values["value"], dtype=np.float64)[order]
    part, padded = values["part"][order], np.asarray(values["padded"], dtype=bool)[order]
    stamps = np.asarray(values["timestamp"]).astype("datetime64[us]")[order]
    found = {"ids": [], "history": [], "actual": [], "inputs": [], "padded": [], "times": []}
    for start, stop in runs:
        v, p, pad = value[start:stop], part[start:stop], padded[start:stop]
        test = np.flatnonzero(p == "test")
        if len(test) != horizon:
            continue
        at, first = int(test[0]) - offset, int(np.argmax(~pad))
        known = v[first:max(at, first)]
        known = known[~np.isnan(known)]
        target = v[at:at + horizon] if at >= first else np.array([])
        if len(known) < min_history(periods[str(ids[start])]) or len(target) != horizon or np.isnan(target).any():
            continue
        window = v[max(at - n_steps, 0):at]
        if np.isnan(window).any():
            window = pd.Series(window).ffill().bfill().to_numpy()
        found["ids"].append(str(ids[start]))
        found["history"].append(known)
        found["actual"].append(target)
        found["inputs"].append(np.r_[np.full(n_steps - len(window), window[0]), window].astype(np.float32))
        found["padded"].append(max(0, n_steps - (at - first)))
        found["times"].append(stamps[start:stop][at:at + horizon])
    return found


def test_cutoffs_cut_from_all_series_at_once_hold_what_each_series_knew_there():
    from seqcast.evaluation.backtest import cut_series

    rng = np.random.default_rng(11)
    horizon, n_steps, columns = 4, 9, {name: [] for name in ("series_id", "step", "timestamp", "value", "part",
                                                             "padded")}
    periods = {}
    for i in range(60):
        sid, n = f"s{i:02d}", int(rng.integers(6, 40))
        pad = int(rng.integers(0, 6)) if i % 3 == 0 else 0
        value = rng.normal(10, 2, n + pad)
        value[:pad] = value[pad] if pad < len(value) else 0.0  # ingest pads with the first value
        value[rng.random(n + pad) < 0.08] = np.nan  # gaps that missing='drop' left
        n_test = horizon if i % 7 else horizon - 1  # a few series without a whole test part
        part = np.array(["train"] * (n + pad - n_test) + ["test"] * n_test)
        order = rng.permutation(n + pad)  # the rows in any order
        columns["series_id"] += [sid] * (n + pad)
        columns["step"] += list(order)
        columns["timestamp"] += list(np.datetime64("2024-01-01") + order.astype("timedelta64[D]"))
        columns["value"] += list(value[order])
        columns["part"] += list(part[order])
        columns["padded"] += list((np.arange(n + pad) < pad)[order])
        periods[sid] = int(rng.choice([1, 4, 12]))
    values = {name: np.array(column, dtype=object if name in ("series_id", "part") else None)
              for name, column in columns.items()}
    values["timestamp"] = values["timestamp"].astype("datetime64[us]")
    offsets = [0, 2, 5, 11]
    for k, cutoff in enumerate(cut_series(values, periods, horizon, n_steps, offsets)):
        expected = reference_cut(values, periods, horizon, n_steps, k, offsets[k])
        assert cutoff.index == k and cutoff.offset == offsets[k] and len(expected["ids"]) > 5
        assert cutoff.series.series_ids == expected["ids"] and cutoff.left_out == 60 - len(expected["ids"])
        for mine, theirs in zip(cutoff.series.history, expected["history"], strict=True):
            np.testing.assert_array_equal(mine, theirs)
        np.testing.assert_array_equal(cutoff.series.actual, np.array(expected["actual"]))
        np.testing.assert_array_equal(cutoff.inputs, np.array(expected["inputs"]))
        np.testing.assert_array_equal(cutoff.padded, expected["padded"])
        np.testing.assert_array_equal(cutoff.timestamps, np.array(expected["times"]))
        assert cutoff.series.period.tolist() == [periods[sid] for sid in expected["ids"]]


def test_a_backtest_whose_forecasts_diverge_fails_at_once_without_retrying_its_shard(home, capsys, monkeypatch,
                                                                                     monthly_file):  # noqa: F811
    import seqcast.tasks.backtest as tasks_backtest
    from seqcast.training.fit import Diverged

    path, _ = monthly_file
    dataset_id = ingested(capsys, str(path), *M3_INGEST, "--shards", "2")
    fits, fit = [], tasks_backtest.forecast_groups

    def diverging(method, groups, horizon, progress=None):  # every forecast of the shard NaN, as a model blown up
        fits.append(len(groups))
        return [np.full_like(found, np.nan) for found in fit(method, groups, horizon, progress)]

    monkeypatch.setattr(tasks_backtest, "forecast_groups", diverging)
    with pytest.raises(Diverged, match="NaN or infinite"):
        backtest.with_options(retry_delay_seconds=0)(variant="stats_theta", dataset_id=dataset_id, windows=2)
    assert len(fits) == 2  # once per shard: neither a shard task nor the flow run tried again
    with results_db(home) as con:
        assert con.execute("SELECT status, n_series FROM backtests").fetchall() == [("failed", 0)]
        assert con.execute("SELECT count(*) FROM backtest_forecasts").fetchone() == (0,)
    assert not any((home / "staged").glob("*/*/*.parquet"))  # nothing staged is left behind

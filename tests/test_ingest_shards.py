"""Streaming ingest: a file partitioned by shard and checked shard by shard makes the dataset the whole file makes
in memory (the same id, hashes, index and values), and refuses a file with the whole file's problems."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from seqcast.data.ingest import IngestError, IngestParams
from seqcast.flows.ingest import ingest
from seqcast.storage import shards, sources
from seqcast.tasks.ingest import prepare, write_prepared
from tests.series_files import COLUMNS, daily_series, write


def mixed_panel(n_series: int = 60) -> pd.DataFrame:
    """Daily, monthly and hourly series of several lengths (some too short for a window without padding), one
    with a gap and one with a missing value, rows shuffled."""
    rng = np.random.default_rng(7)
    frames = []
    for i in range(n_series):
        freq = ("D", "MS", "h")[i % 3]
        stamps = pd.date_range("2020-01-01", periods=int(rng.integers(30, 60)), freq=freq)
        if i == 3:
            stamps = stamps.delete(12)  # a missing step
        frames.append(pd.DataFrame({"store": f"s{i:03d}", "day": stamps.strftime("%Y-%m-%d %H:%M"),
                                    "sales": rng.normal(10 + i, 2, len(stamps)).round(3)}))
    frame = pd.concat(frames, ignore_index=True)
    frame.loc[frame.index[frame["store"] == "s007"][20], "sales"] = np.nan  # a missing value
    return frame.sample(frac=1, random_state=1).reset_index(drop=True)


OPTIONS = [
    {"missing": "drop", "shards": 3, "n_steps": 7, "horizon": 3},
    {"missing": "interpolate", "scaling": "global", "split": "last-horizon", "short_series": "pad", "shards": 5,
     "n_steps": 14, "horizon": 6},
    {"missing": "drop", "scaling": "none", "split": "last-horizon", "short_series": "pad", "n_steps": 12,
     "horizon": 4},
]


@pytest.mark.usefixtures("prefect_harness")
@pytest.mark.parametrize("options", OPTIONS, ids=["drop-3", "interpolate-global-pad-5", "default-shards"])
@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_streamed_ingest_makes_the_dataset_the_whole_file_makes(home, tmp_path, monkeypatch, options, suffix):
    monkeypatch.setattr(sources, "BATCH_ROWS", 500)  # several batches, each spread over every shard
    monkeypatch.setattr(shards, "MERGED_SERIES", 7)  # the series merged into id order a few at a time
    path = write(mixed_panel(), tmp_path / f"mixed{suffix}")
    result = ingest(source=str(path), **COLUMNS, **options)
    streamed = home / "datasets" / result["dataset_id"]

    # main's path: the whole file in memory, then written in as many shards
    expected = prepare(IngestParams(source=str(path), **COLUMNS, **options))
    n_shards = options.get("shards", 1)
    monkeypatch.setenv("SEQCAST_HOME", str(tmp_path / "whole"))
    whole = write_prepared(expected, n_shards)

    assert result["dataset_id"] == expected.dataset_id == whole.dataset_id
    mine = json.loads((streamed / "dataset.json").read_text())
    assert mine["content_hash"] == whole.manifest["content_hash"] and mine["n_shards"] == n_shards
    assert mine["spec"] == whole.manifest["spec"] and mine["shapes"] == whole.manifest["shapes"]
    assert mine["scaling"]["mode"] == whole.manifest["scaling"]["mode"]
    for sid, stats in whole.manifest["scaling"]["stats"].items():
        assert mine["scaling"]["stats"][sid] == pytest.approx(stats, rel=1e-12)
    assert pq.read_table(streamed / "series.parquet").equals(pq.read_table(whole.path / "series.parquet"))
    for number in range(n_shards):
        file = f"values.parquet/{shards.shard_file(number)}"
        # NaN where missing='drop' left a gap: compared as equal by pandas, not by Arrow's equals
        pd.testing.assert_frame_equal(pq.read_table(streamed / file).to_pandas(),
                                      pq.read_table(whole.path / file).to_pandas())
    # nothing of the work is left beside the dataset
    assert sorted(p.name for p in (home / "datasets").iterdir()) == [result["dataset_id"]]
    assert sorted(p.relative_to(streamed).as_posix() for p in streamed.rglob("*") if p.name != ".unsynced") == \
        sorted(p.relative_to(whole.path).as_posix() for p in whole.path.rglob("*") if p.name != ".unsynced")


def test_text_timestamps_take_the_format_of_the_files_first_cell_in_every_shard(tmp_path, monkeypatch):
    """Day-first dates: the file's first cell (13/01) says so; a shard whose first cell is 01/02 must not read its
    dates month-first."""
    frames = []
    for i in range(12):
        stamps = pd.date_range("2024-01-13" if i == 0 else "2024-01-01", periods=40, freq="D")
        frames.append(pd.DataFrame({"store": f"s{i:02d}", "day": stamps.strftime("%d/%m/%Y"),
                                    "sales": np.arange(40.0) + i}))
    path = write(pd.concat(frames, ignore_index=True), tmp_path / "dayfirst.csv")
    from seqcast.tasks.ingest import ingest_part, partition_file, publish_parts

    params = IngestParams(source=str(path), **COLUMNS, n_steps=7, horizon=3, shards=4)
    monkeypatch.setenv("SEQCAST_HOME", str(tmp_path / "home"))
    from seqcast.storage.home import current_store

    with current_store().datasets.staging() as work:
        staged = partition_file(params, str(work))
        assert staged["first_timestamp"] == "13/01/2024"
        ref, spec = publish_parts(staged, [ingest_part(staged, n, params) for n in range(4)], params)
    assert ref.dataset_id == prepare(params).dataset_id and spec["frequency"] == "D"
    assert pq.read_table(ref.path / "series.parquet").column("first_timestamp").to_pylist()[1] == \
        pd.Timestamp("2024-01-01").to_pydatetime()


def some_short() -> pd.DataFrame:
    """48 series of 40 days, but every fourth of 12 days: too short for a window in each part."""
    return pd.concat([daily_series(n_series=1, days=12 if i % 4 == 1 else 40, seed=i).assign(store=f"s{i:02d}")
                      for i in range(48)], ignore_index=True)


def same_refusal(path, options: dict) -> str:
    """The streamed ingest's refusal of the file, which must be the whole file's (main's in-memory path) word for
    word."""
    with pytest.raises(IngestError) as whole:
        prepare(IngestParams(source=str(path), **options))
    with pytest.raises(IngestError) as streamed:
        ingest(source=str(path), **options)
    assert str(streamed.value) == str(whole.value)
    return str(streamed.value)


@pytest.mark.usefixtures("prefect_harness")
def test_a_refusal_names_the_first_offending_series_of_the_whole_file_and_counts_the_rest(home, tmp_path):
    frame = some_short()
    path = write(frame, tmp_path / "short.csv")
    options = {**COLUMNS, "n_steps": 7, "horizon": 3, "shards": 4}
    refusal = same_refusal(path, options)
    # 12 series in 4 shards, 3 parts each: the first of the whole file named first, the rest counted
    assert refusal.startswith("36 problem(s) in the input:\n  series 's01': its training part")
    assert refusal.endswith("\n  ... and 26 more")
    assert not home.exists()  # nothing written, not even the store's folders

    # a row problem in one shard stops the whole file before any series check of the others, as in memory
    frame["sales"] = frame["sales"].astype(object)
    frame.loc[frame.index[frame["store"] == "s30"][3], "sales"] = "twelve"
    path = write(frame, tmp_path / "bad.csv")
    assert same_refusal(path, options) == ("1 problem(s) in the input:\n  series 's30', row 980: value 'twelve' "
                                           "is not a number")


@pytest.mark.parametrize("block", [1, 2, 5, 64, 1 << 24])
def test_a_file_that_is_not_utf8_is_refused_at_the_same_byte_however_it_is_read(tmp_path, block):
    """The streamed reader finds the first byte that does not decode block by block: a character split by a block's
    end (é, two bytes) is no error, and the offset and line count the whole file."""
    text = "store,day,sales\né1,2024-01-01,1\né1,2024-01-02,2\n".encode() + b"s\xe9,2024-01-03,3\n"
    path = tmp_path / "latin1.csv"
    path.write_bytes(text)
    with pytest.raises(sources.SourceError) as whole:
        sources.read_long(path, "store", "day", "sales", "series")
    assert sources._first_undecodable(path, block).problems == whole.value.problems
    offset = text.index(b"s\xe9") + 1
    assert whole.value.problems == [f"latin1.csv is not UTF-8 text: byte 0xe9 at offset {offset} (line 4) does not "
                                    f"decode; save the file as UTF-8"]


@pytest.mark.usefixtures("prefect_harness")
def test_more_shards_than_series_leaves_some_empty_and_the_dataset_the_same(home, tmp_path, monkeypatch):
    path = write(daily_series(n_series=5, days=40), tmp_path / "five.parquet")
    options = {**COLUMNS, "n_steps": 7, "horizon": 3, "shards": 12}
    state = ingest(source=str(path), **options, return_state=True)
    result = state.result()
    monkeypatch.setenv("SEQCAST_HOME", str(tmp_path / "whole"))
    whole = write_prepared(prepare(IngestParams(source=str(path), **options)), 12)
    streamed = home / "datasets" / result["dataset_id"]
    assert result["dataset_id"] == whole.dataset_id
    assert json.loads((streamed / "dataset.json").read_text())["content_hash"] == whole.manifest["content_hash"]
    sizes = [pq.read_metadata(streamed / "values.parquet" / shards.shard_file(n)).num_rows for n in range(12)]
    assert sizes == [pq.read_metadata(whole.path / "values.parquet" / shards.shard_file(n)).num_rows
                     for n in range(12)]
    assert sizes.count(0) >= 7 and sum(sizes) == 5 * 40

    # the flow run shows its shards done in the UI: a progress artifact, at 100 % once every shard is done
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(
            any_=[state.state_details.flow_run_id])))
    (progress,) = [a for a in found if a.type == "progress"]
    assert progress.data == 100.0 and progress.description == "ingest: 12 shards"


@pytest.mark.usefixtures("prefect_harness")
def test_global_scaling_is_checked_with_the_whole_files_statistics(home, tmp_path):
    """Under global scaling a shard's own statistics are not the file's: the reduce checks every series with the
    statistics of all training parts, and refuses what the whole file is refused for."""
    frame = daily_series(n_series=6, days=40)
    frame["sales"] = 1.0 + 1e-6 * np.sin(np.arange(len(frame)))  # training parts of a tiny spread
    frame.loc[frame.index[frame["store"] == "s04"][-1], "sales"] = 1e36  # a test value that overflows once scaled
    path = write(frame, tmp_path / "spiky.csv")
    refusal = same_refusal(path, {**COLUMNS, "n_steps": 7, "horizon": 3, "scaling": "global", "shards": 3})
    assert refusal.startswith("1 problem(s) in the input:\n  series 's04': scaling its values (global")
    assert not home.exists()
